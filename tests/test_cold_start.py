"""Tests for course_lib.experiments.cold_start and course_lib.models (meta_irt, nearest_learners)."""

import json

import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.data.responses import StudyData
from course_lib.data.synthetic import sample_2pl
from course_lib.experiments import cold_start as cs
from course_lib.experiments.common import load_json
from course_lib.models.meta_irt import META_LEARNERS, MetaIRT, MetaIRTConfig, make_meta_learner, train_meta_irt
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
    nl = NearestLearners(past, n_neighbors=10)
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


SMALL_META = MetaIRTConfig(dims=1, iterations=40, warm_iterations=20, meta_batch=16, max_query=10)


@pytest.fixture(scope="module")
def small_run(synth):
    cfg = cs.Config(dataset="synthetic", k_shots=(1, 3), methods=("item_mean", "irt_2pl_eap", "nearest_learners",
                                                                   "maml", "reptile", "bayes_optimal"),
                    seed=0, meta=SMALL_META, n_boot=20, keep_predictions=True)
    return cs.run(cfg, data=StudyData(synth.responses, None, synth), progress=False)


def test_run_schema_and_split(small_run, synth):
    res = small_run
    assert res.study == "cold_start" and res.wall_s > 0 and set(res.details) >= {"split", "timings"}
    assert len(res.rows) == 6 * 2
    for row in res.rows:
        for key in ("method", "kind", "k_shot", "auc", "auc_lo", "auc_hi", "logloss", "ece", "n_learners"):
            assert key in row
        assert row["kind"] == cs.KINDS[row["method"]]
        assert row["auc_lo"] <= row["auc"] <= row["auc_hi"]
        assert row["n_learners"] == len(res.details["split"]["test"])
    split = [set(v) for v in res.details["split"].values()]
    assert sum(len(s) for s in split) == synth.responses.shape[0] == len(set().union(*split))
    json.dumps({"config": res.config, "wall_s": res.wall_s, "rows": res.rows})
    # the ceiling is the best predictor in log-loss (up to noise) and beats the item mean in AUC
    rows = {(r["method"], r["k_shot"]): r for r in res.rows}
    assert rows[("bayes_optimal", 3)]["auc"] > rows[("item_mean", 3)]["auc"]
    assert rows[("bayes_optimal", 3)]["logloss"] < rows[("item_mean", 3)]["logloss"]


def test_run_uses_learners_only_from_their_split(small_run):
    # support / query tasks are built for the test learners only
    b = small_run.details["supports"][1]
    assert b.n_tasks == len(small_run.details["split"]["test"])


def test_run_bad_inputs(synth):
    data = StudyData(synth.responses)
    with pytest.raises(ValueError, match="unknown method"):
        cs.run(cs.Config(methods=("magic",)), data=data)
    with pytest.raises(ValueError, match="needs truth"):
        cs.run(cs.Config(k_shots=(1,), methods=("bayes_optimal",)), data=data)
    with pytest.raises(ValueError, match="needs groups"):
        cs.run(cs.Config(k_shots=(1,), methods=("irt_2pl_by_group",)), data=data)
    with pytest.raises(ValueError, match="K = 40 needs at least 41"):
        cs.run(cs.Config(k_shots=(40,), methods=("item_mean",)), data=data)
    with pytest.raises(ValueError, match="groups has"):
        cs.run(cs.Config(k_shots=(1,), methods=("item_mean",)), data=StudyData(synth.responses, ["a"]))
    with pytest.raises(ValueError, match="k_shots must be positive"):
        cs.run(cs.Config(k_shots=(0, 1)), data=data)
    with pytest.raises(ValueError, match="unknown dataset"):
        cs.run(cs.Config(dataset="mnist"))


def test_cli_writes_json(tmp_path):
    out = tmp_path / "v.json"
    cs.main(["--set", "dataset=verbagg", "--set", "k_shots=1,3", "--set", "methods=item_mean,irt_2pl_eap",
             "--json", str(out), "--no-progress"])
    data = json.loads(out.read_text())
    assert data["config"]["dataset"] == "verbagg" and data["wall_s"] > 0
    assert {r["method"] for r in data["rows"]} == {"item_mean", "irt_2pl_eap"}
    assert all(r["n_learners"] == 63 for r in data["rows"])
    assert load_json(out).rows == data["rows"]


# ----------------------------------------------------------------------------- models/meta_irt: the recipe

def test_meta_learner_registry_builds_each_method():
    model = MetaIRT(6, dims=1, seed=0)
    cfg = MetaIRTConfig(alpha=0.5, steps=2, reptile_alpha=0.2, reptile_steps=4)
    assert set(META_LEARNERS) == {"maml", "fomaml", "meta_sgd", "reptile"}
    assert make_meta_learner("fomaml", model, cfg).first_order
    assert make_meta_learner("meta_sgd", model, cfg).alphas
    reptile = make_meta_learner("reptile", model, cfg)
    assert reptile.steps == 4 and reptile.adapt_prefixes is None     # Reptile adapts every parameter
    with pytest.raises(ValueError, match="choose from"):
        make_meta_learner("maml++", model, cfg)
    with pytest.raises(ValueError, match="must be > 0"):
        MetaIRTConfig(steps=0)


def test_train_meta_irt_k_range_draws_only_learners_with_enough_answers(synth):
    r = synth.responses.clone()
    r[0, 2:] = float("nan")                           # learner 0 has 2 answers: too few for K up to 3
    seen = []
    import course_lib.models.meta_irt as mi
    original = mi.learner_tasks

    def spy(responses, k_shot, learners, **kw):
        seen.append((k_shot, learners.clone()))
        return original(responses, k_shot, learners, **kw)

    mi.learner_tasks = spy
    try:
        learner = train_meta_irt("fomaml", r, torch.arange(40), (1, 3), SMALL_META, iterations=12, seed=0,
                                 progress=False)
    finally:
        mi.learner_tasks = original
    assert {k for k, _ in seen} <= {1, 2, 3} and len({k for k, _ in seen}) > 1
    assert all(0 not in ix.tolist() for _, ix in seen)
    assert learner.model.item_a.shape == (r.shape[1], 1)
