"""Tests for course_lib.models.posterior_meta_irt, metrics.paired_auc_difference and the MIRT methods of cold_start."""

import numpy as np
import pytest
import torch

from course_lib import metrics
from course_lib.data.responses import StudyData
from course_lib.data.synthetic import sample_2pl
from course_lib.experiments import cold_start as cs
from course_lib.models.meta_irt import MetaIRTConfig
from course_lib.models.posterior_meta_irt import PosteriorMetaConfig, PosteriorMetaIRT, train_posterior_meta_irt
from course_lib.tasks import learner_tasks


@pytest.fixture(scope="module")
def synth():
    return sample_2pl(400, 14, dims=2, correlation=0.3, missing_rate=0.1, seed=6)


def test_untrained_model_is_the_bayes_posterior_predictive():
    """With the true items and prior N(0, I), forward() is the Bayes-optimal prediction (another grid)."""
    s = sample_2pl(50, 10, dims=2, correlation=0.0, seed=2)
    b = learner_tasks(s.responses, 4, generator=torch.Generator().manual_seed(0))
    got = PosteriorMetaIRT(s.a, s.d)(b).detach()
    want = s.posterior_predictive(b.x_support, b.y_support, b.support_mask, b.x_query)
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)


def test_training_never_ends_worse_on_validation_than_it_starts(synth):
    r = synth.responses
    val = [learner_tasks(r, k, torch.arange(300, 400), generator=torch.Generator().manual_seed(k)) for k in (1, 3)]
    init = (torch.full((14, 2), 0.5), torch.zeros(14))
    start = PosteriorMetaIRT(*init)
    start_loss = np.mean([float(metrics.query_log_loss(start(b).detach(), b.y_query, b.query_mask)) for b in val])
    model, hist = train_posterior_meta_irt(r, torch.arange(300), (1, 3), init,
                                           PosteriorMetaConfig(iterations=40, eval_every=10, meta_batch=64),
                                           val_tasks=val, seed=0)
    end_loss = np.mean([float(metrics.query_log_loss(model(b).detach(), b.y_query, b.query_mask)) for b in val])
    assert len(hist["val_loss"]) == 4 and end_loss <= start_loss + 1e-6
    assert end_loss == pytest.approx(min([start_loss] + hist["val_loss"]), abs=1e-4)
    with pytest.raises(ValueError, match="k_range"):
        train_posterior_meta_irt(r, torch.arange(300), (3, 1), init)
    with pytest.raises(ValueError, match="must be > 0"):
        PosteriorMetaConfig(iterations=0)


def test_paired_auc_difference_is_the_auc_difference_and_antisymmetric():
    rng = np.random.default_rng(0)
    learner = np.repeat(np.arange(60), 8)
    y = rng.integers(0, 2, len(learner)).astype(float)
    p_a = np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(len(y)), 0.01, 0.99)
    p_b = np.clip(0.5 + 0.1 * (y - 0.5) + 0.2 * rng.standard_normal(len(y)), 0.01, 0.99)
    ab = metrics.paired_auc_difference(y, p_a, p_b, learner, n_boot=50)
    ba = metrics.paired_auc_difference(y, p_b, p_a, learner, n_boot=50)
    assert ab["diff"] == pytest.approx(metrics.auc(y, p_a) - metrics.auc(y, p_b))
    assert ab["diff"] == pytest.approx(-ba["diff"]) and ab["diff_lo"] == pytest.approx(-ba["diff_hi"])
    assert ab["diff_lo"] <= ab["diff"] <= ab["diff_hi"]
    same = metrics.paired_auc_difference(y, p_a, p_a, learner, n_boot=20)
    assert same["diff"] == 0 and same["diff_lo"] == same["diff_hi"] == 0
    with pytest.raises(ValueError, match="same length"):
        metrics.paired_auc_difference(y, p_a[:-1], p_b, learner)


def test_cold_start_mirt_methods_and_paired_rows(synth):
    cfg = cs.Config(k_shots=(1, 3), methods=("irt_2pl_eap", "mirt_2d", "posterior_meta_2d", "meta_sgd_mirt"),
                    n_boot=20, meta=MetaIRTConfig(iterations=20, warm_iterations=10, meta_batch=16, max_query=10),
                    posterior=PosteriorMetaConfig(iterations=20, eval_every=10, meta_batch=32))
    res = cs.run(cfg, data=StudyData(synth.responses), progress=False)
    assert {r["method"] for r in res.rows} == set(cfg.methods)
    paired = res.details["paired"]
    assert {(p["method"], p["against"]) for p in paired} == {(m, ref) for m in ("posterior_meta_2d", "meta_sgd_mirt")
                                                             for ref in ("irt_2pl_eap", "mirt_2d")}
    assert all(p["diff_lo"] <= p["diff"] + 1e-9 and p["diff"] <= p["diff_hi"] + 1e-9 for p in paired)
