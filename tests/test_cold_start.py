"""Tests for course_lib.experiments.cold_start and course_lib.models."""

import json

import numpy as np
import pytest
import torch

from course_lib import metrics
from course_lib.algorithms import MAML
from course_lib.data.synthetic import sample_2pl
from course_lib.experiments import cold_start as cs
from course_lib.models.meta_irt import MetaIRT
from course_lib.models.nearest_learners import NearestLearners


@pytest.fixture(scope="module")
def synth():
    return sample_2pl(300, 16, missing_rate=0.1, seed=4)


def test_evaluation_tasks_support_query_disjoint_and_nested(synth):
    r = synth.responses
    learners = torch.arange(50)
    prev = None
    for k in (1, 3, 5):
        b = cs.evaluation_tasks(r, learners, k, seed=7)
        for i in range(b.n_tasks):
            s = set(b.x_support[i].tolist())
            q = set(b.x_query[i][b.query_mask[i]].tolist())
            answered = set(torch.nonzero(~torch.isnan(r[learners[i]])).flatten().tolist())
            assert not s & q                        # no query item in the support
            assert s | q == answered                # every other answered item is a query item
            assert len(s) == k
            if prev is not None:
                assert set(prev.x_support[i].tolist()) <= s  # nested supports across K
        prev = b


def test_pooled_metrics_equal_course_metrics():
    rng = np.random.default_rng(0)
    learner = np.repeat(np.arange(25), 12)
    p = np.round(rng.random(len(learner)), 2)
    y = (rng.random(len(learner)) < p).astype(float)
    m = cs.pooled_metrics(y, p, learner, n_boot=60, seed=5)
    groups = [(y[learner == i], p[learner == i]) for i in range(25)]
    point, lo, hi = metrics.bootstrap_ci(metrics.auc, groups, n_boot=60, seed=5)
    assert m["auc"] == pytest.approx(metrics.auc(y, p)) == pytest.approx(point)
    assert m["auc_lo"] == pytest.approx(lo) and m["auc_hi"] == pytest.approx(hi)
    assert m["logloss"] == pytest.approx(metrics.log_loss(y, p))
    assert m["ece"] == pytest.approx(metrics.expected_calibration_error(y, p))
    _, llo, lhi = metrics.bootstrap_ci(metrics.log_loss, groups, n_boot=60, seed=5)
    assert m["logloss_lo"] == pytest.approx(llo, abs=1e-6) and m["logloss_hi"] == pytest.approx(lhi, abs=1e-6)


def test_metairt_inner_step_is_an_ability_update():
    """One MAML inner step on MetaIRT = θ + α · mean_j a_j (y_j − p_j): the IRT score function."""
    model = MetaIRT(6, dims=1, init_d=torch.linspace(-1, 1, 6), seed=0)
    maml = MAML(model, loss="bce", alpha=0.7, steps=1, adapt=["ability"])
    x = torch.tensor([0, 2, 5])
    y = torch.tensor([1.0, 0.0, 1.0])
    phi = maml.adapt(x, y)
    a, d = model.item_a.detach()[x, 0], model.item_d.detach()[x]
    p = torch.sigmoid(a * 0.0 + d)
    want = 0.0 + 0.7 * (a * (y - p)).mean()
    torch.testing.assert_close(phi["ability"], want.reshape(1))
    torch.testing.assert_close(phi["item_a"], model.item_a.detach())  # item parameters untouched


def test_nearest_learners_distances_brute_force(synth):
    past = synth.responses[:100]
    nl = NearestLearners(past, k=10)
    items = torch.tensor([[0, 3, 5], [1, 2, 4]])
    ans = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    d = nl.distances(items, ans)
    for i in range(2):
        for m in range(0, 100, 17):
            vals = past[m, items[i]]
            ok = ~torch.isnan(vals)
            want = ((vals[ok] - ans[i][ok]) ** 2).mean() if ok.any() else torch.tensor(1.0)
            assert d[i, m].item() == pytest.approx(want.item())
    p = nl.predict(items, ans, None, torch.tensor([[6, 7], [6, 7]]))
    assert p.shape == (2, 2) and ((p > 0) & (p < 1)).all()


@pytest.fixture(scope="module")
def small_run(synth):
    cfg = cs.MetaConfig(dims=1, iterations=40, warm_iterations=20, meta_batch=16, max_query=10)
    return cs.run(synth.responses, ks=(1, 3), methods=["item_mean", "irt_2pl_eap", "nearest_learners",
                                                        "maml", "reptile", "bayes_optimal"],
                  seed=0, dataset="synthetic", truth=synth, meta=cfg, n_boot=20, progress=False)


def test_run_schema_and_split(small_run, synth):
    res = small_run
    assert set(res) >= {"dataset", "wall_s", "rows", "split"}
    assert len(res["rows"]) == 6 * 2
    for row in res["rows"]:
        for key in ("method", "kind", "k", "auc", "auc_lo", "auc_hi", "logloss", "ece", "n_learners"):
            assert key in row
        assert row["kind"] == cs.KINDS[row["method"]]
        assert row["auc_lo"] <= row["auc"] <= row["auc_hi"]
        assert row["n_learners"] == len(res["split"]["test"])
    split = [set(v) for v in res["split"].values()]
    assert sum(len(s) for s in split) == synth.responses.shape[0] == len(set().union(*split))
    json.dumps({k: res[k] for k in ("dataset", "wall_s", "rows")})
    # the ceiling is the best predictor in log-loss (up to noise) and beats the item mean in AUC
    rows = {(r["method"], r["k"]): r for r in res["rows"]}
    assert rows[("bayes_optimal", 3)]["auc"] > rows[("item_mean", 3)]["auc"]
    assert rows[("bayes_optimal", 3)]["logloss"] < rows[("item_mean", 3)]["logloss"]


def test_run_uses_learners_only_from_their_split(small_run):
    # support / query tasks are built for the test learners only
    b = small_run["supports"][1]
    assert b.n_tasks == len(small_run["split"]["test"])


def test_run_bad_inputs(synth):
    r = synth.responses
    with pytest.raises(ValueError, match="unknown methods"):
        cs.run(r, methods=["magic"])
    with pytest.raises(ValueError, match="needs truth"):
        cs.run(r, ks=(1,), methods=["bayes_optimal"])
    with pytest.raises(ValueError, match="needs groups"):
        cs.run(r, ks=(1,), methods=["irt_2pl_by_group"])
    with pytest.raises(ValueError, match="K = 40 needs at least 41"):
        cs.run(r, ks=(40,), methods=["item_mean"])
    with pytest.raises(ValueError, match="groups has"):
        cs.run(r, ks=(1,), methods=["item_mean"], groups=["a"])


def test_cli_writes_json(tmp_path):
    out = tmp_path / "v.json"
    cs.main(["--dataset", "verbagg", "--ks", "1", "3", "--methods", "item_mean", "irt_2pl_eap",
             "--json", str(out), "--no-progress"])
    data = json.loads(out.read_text())
    assert data["dataset"] == "verbagg" and data["wall_s"] > 0
    assert {r["method"] for r in data["rows"]} == {"item_mean", "irt_2pl_eap"}
    assert all(r["n_learners"] == 63 for r in data["rows"])
