"""Learner-level DP meta-training (chapter 09, section 2): clipping, noise, accounting against Opacus."""

from __future__ import annotations

import math

import pytest
import torch
from opacus.accountants import RDPAccountant

from course_lib.algorithms import MAML, maml_loss
from course_lib.algorithms.private import (RDP_ORDERS, DPConfig, check_epsilon, clip_per_task, dp_epsilon,
                                           noise_for_epsilon, per_task_meta_gradients, private_step, privatize)
from course_lib.data.synthetic import sample_2pl
from course_lib.models.meta_irt import MetaIRT, MetaIRTConfig
from course_lib.models.private_meta_irt import train_private_meta_irt
from course_lib.tasks import learner_tasks


@pytest.fixture(scope="module")
def data():
    return sample_2pl(80, 25, missing_rate=0.05, seed=2).responses


def _maml(seed: int = 0) -> MAML:
    return MAML(MetaIRT(25, 2, seed=seed), loss="bce", alpha=1.0, steps=2, adapt=["ability"])


def test_per_task_gradients_average_to_the_maml_gradient(data):
    batch = learner_tasks(data, 4, torch.arange(12), generator=torch.Generator().manual_seed(0))
    m = _maml()
    per_task = per_task_meta_gradients(m.model, m.theta, batch, loss_fn=m.loss_fn, alpha=1.0, steps=2,
                                       adapt=["ability"])
    full = torch.autograd.grad(maml_loss(m.model, m.theta, batch, loss_fn=m.loss_fn, alpha=1.0, steps=2,
                                         adapt=["ability"]), list(m.theta.values()))
    for (name, g), want in zip(per_task.items(), full):
        assert g.shape == (12, *want.shape)
        assert torch.allclose(g.mean(0), want, atol=1e-7, rtol=1e-5), name


def test_no_noise_no_clipping_reproduces_the_non_private_run(data):
    plain, private = _maml(), _maml()
    opt_a = torch.optim.Adam(plain.parameters(), lr=0.05)
    opt_b = torch.optim.Adam(private.parameters(), lr=0.05)
    dp = DPConfig(clip=math.inf, noise_multiplier=0.0, sample_rate=0.5, delta=1e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        batch = learner_tasks(data, 3, torch.arange(step * 10, step * 10 + 10), generator=g)
        plain.step(batch, opt_a)
        private_step(private, batch, opt_b, dp, expected_batch=batch.n_tasks)
    for name, v in plain.theta.items():
        assert torch.allclose(v, private.theta[name], atol=1e-6, rtol=0), name


def test_every_clipped_task_gradient_respects_the_bound():
    gen = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(50, 7, 3, generator=gen) * torch.logspace(-3, 1, 50)[:, None, None],
             "b": torch.randn(50, 4, generator=gen)}
    clipped, norms = clip_per_task(grads, 0.5)
    after = torch.sqrt(sum(v.reshape(50, -1).pow(2).sum(1) for v in clipped.values()))
    assert (after <= 0.5 * (1 + 1e-5)).all()
    small = norms <= 0.5
    assert small.any() and (~small).any()
    assert torch.allclose(after[small], norms[small]) and torch.allclose(after[~small], torch.tensor(0.5))
    assert clip_per_task(grads, math.inf)[0]["a"] is grads["a"]


def test_noise_has_the_calibrated_scale():
    zeros = {"w": torch.zeros(3, 20000)}
    out = privatize(zeros, clip=0.2, noise_multiplier=1.5, expected_batch=10.0,
                    generator=torch.Generator().manual_seed(0))["w"]
    assert abs(float(out.std()) - 1.5 * 0.2 / 10) < 0.002


@pytest.mark.parametrize("sigma, q, steps", [(1.1, 0.01, 500), (0.6, 0.05, 120), (3.0, 0.2, 40)])
def test_epsilon_agrees_with_opacus(sigma, q, steps):
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    assert dp_epsilon(sigma, q, steps, 1e-4) == pytest.approx(accountant.get_epsilon(1e-4, alphas=RDP_ORDERS),
                                                               rel=1e-12)
    assert dp_epsilon(sigma, q, steps, 1e-4) <= accountant.get_epsilon(1e-4) + 1e-9  # more orders: never looser


def test_noise_for_epsilon_meets_the_target():
    for eps in (1.0, 3.0, 8.0):
        sigma = noise_for_epsilon(eps, 1e-3, 0.02, 200)
        assert eps - 0.02 <= dp_epsilon(sigma, 0.02, 200, 1e-3) <= eps
    assert noise_for_epsilon(math.inf, 1e-3, 0.02, 200) == 0.0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "3", True])
def test_bad_epsilon_gets_a_clear_error(bad):
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        check_epsilon(bad)


def test_dp_config_rejects_noise_without_clipping():
    with pytest.raises(ValueError, match="noise without clipping"):
        DPConfig(clip=math.inf, noise_multiplier=1.0, sample_rate=0.1, delta=1e-3)
    with pytest.raises(ValueError, match="delta"):
        DPConfig(clip=1.0, noise_multiplier=1.0, sample_rate=0.1, delta=0)


def test_private_training_reports_the_epsilon_it_spent(data):
    cfg = MetaIRTConfig(dims=1, steps=1, meta_batch=8, max_query=10)
    maml, report = train_private_meta_irt(data, torch.arange(80), (1, 5), 3.0, clip=0.1, config=cfg, iterations=15)
    assert report["delta"] == 1 / 80 and report["sample_rate"] == 0.1
    assert 2.98 <= report["epsilon"] <= 3.0 and report["noise_multiplier"] > 0
    assert all(torch.isfinite(v).all() for v in maml.theta.values())
    _, report = train_private_meta_irt(data, torch.arange(80), (1, 5), math.inf, config=cfg, iterations=3)
    assert report["epsilon"] == math.inf and report["clip"] == math.inf
    with pytest.raises(ValueError, match="epsilon"):
        train_private_meta_irt(data, torch.arange(80), (1, 5), 0.0, config=cfg, iterations=3)
