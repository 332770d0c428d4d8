"""learn2learn 0.2.0 is installed and its MAML takes a correct adaptation step.

The course library never imports learn2learn, but the notebooks compare course_lib with it, so
the test suite requires it. tools/install_learn2learn.py builds it on Python >= 3.11 (see README,
"Troubleshooting").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

try:
    import learn2learn as l2l
except ImportError as err:  # pragma: no cover - the message is the point
    pytest.fail(
        f"learn2learn cannot be imported ({err}). The test suite requires it: run "
        "`python tools/install_learn2learn.py` (or `make setup`) and read its message; the usual "
        "cause is a missing C compiler (README, 'Troubleshooting').",
        pytrace=False,
    )

ALPHA = 0.1


def tiny_problem(seed: int = 0):
    """A 2-8-1 tanh network with a support and a query set of one regression task."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x_support = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    y_support = torch.randn(5, 1, generator=generator, dtype=torch.float64)
    x_query = torch.randn(7, 2, generator=generator, dtype=torch.float64)
    y_query = torch.randn(7, 1, generator=generator, dtype=torch.float64)
    return model, (x_support, y_support), (x_query, y_query)


def test_learn2learn_version():
    assert l2l.__version__ == "0.2.0"


def test_maml_adapt_takes_one_gradient_step_on_the_clone_only():
    model, (x_s, y_s), _ = tiny_problem()
    theta = {name: p.detach().clone() for name, p in model.named_parameters()}
    maml = l2l.algorithms.MAML(model, lr=ALPHA, first_order=False)

    learner = maml.clone()
    support_loss = nn.functional.mse_loss(learner(x_s), y_s)
    expected_grad = torch.autograd.grad(nn.functional.mse_loss(model(x_s), y_s), list(model.parameters()))
    learner.adapt(support_loss)

    for (name, phi), g in zip(learner.module.named_parameters(), expected_grad, strict=True):
        torch.testing.assert_close(phi, theta[name] - ALPHA * g, rtol=0, atol=1e-12,
                                   msg=f"{name}: φ should be θ − α∇L after one step")
        assert not torch.equal(phi, theta[name]), f"{name} did not change"
    for name, p in maml.module.named_parameters():
        assert torch.equal(p, theta[name]), f"adapt() changed the original parameter {name}"


def test_maml_meta_gradient_reaches_theta_with_the_hessian_term():
    model, (x_s, y_s), (x_q, y_q) = tiny_problem(seed=1)
    maml = l2l.algorithms.MAML(model, lr=ALPHA, first_order=False)
    learner = maml.clone()
    learner.adapt(nn.functional.mse_loss(learner(x_s), y_s))
    nn.functional.mse_loss(learner(x_q), y_q).backward()

    # The same meta-gradient with torch.func: ∇_θ L_q(θ − α∇_θ L_s(θ)), Hessian term included.
    theta = {name: p.detach() for name, p in model.named_parameters()}

    def loss(params, x, y):
        return nn.functional.mse_loss(functional_call(model, params, (x,)), y)

    def meta_loss(params):
        g = grad(loss)(params, x_s, y_s)
        phi = {name: params[name] - ALPHA * g[name] for name in params}
        return loss(phi, x_q, y_q)

    expected = grad(meta_loss)(theta)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no meta-gradient reached {name}"
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12)

    # First-order MAML drops the Hessian term, so its meta-gradient must differ.
    model.zero_grad()
    fo_learner = l2l.algorithms.MAML(model, lr=ALPHA, first_order=True).clone()
    fo_learner.adapt(nn.functional.mse_loss(fo_learner(x_s), y_s))
    nn.functional.mse_loss(fo_learner(x_q), y_q).backward()
    differs = [not torch.allclose(p.grad, expected[n]) for n, p in model.named_parameters()]
    assert any(differs), "first-order MAML should not reproduce the second-order meta-gradient"
