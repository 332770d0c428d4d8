"""MeLU-style recommender, recommendation metrics and the chapter 06 experiment (CLI and JSON)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, grad

from course_lib.algorithms import MAML
from course_lib.data.insteval import CARDINALITY, load_insteval
from course_lib.experiments import recommendation as rec
from course_lib.metrics import mae, ndcg_at_k
from course_lib.models.preference import ADAPT, MeLU, lecturer_catalogue, top_k


def codes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(CARDINALITY[f], (n,), generator=g) for f in
                        ("lecturer", "dept", "service", "lectage", "studage")], 1)


def test_melu_shapes_and_initial_prediction():
    offsets = torch.linspace(-1, 1, CARDINALITY["lecturer"])
    model = MeLU(mu=3.0, lecturer_offsets=offsets)
    x = codes(7)
    out = model(x)
    assert out.shape == (7,)
    # the output layer starts at zero: before training the model is "μ + lecturer offset" (popularity)
    assert torch.allclose(out, 3.0 + offsets[x[:, 0]])
    assert model(codes(12).reshape(3, 4, 5)).shape == (3, 4)
    names = dict(model.named_parameters())
    adapted = [n for n in names if any(n.startswith(p) for p in ADAPT)]
    assert "student_bias" in adapted and all(n.startswith(("decision.", "student_bias")) for n in adapted)
    assert not any(n.startswith("embed.") or n.startswith("lecturer_bias") for n in adapted)


def test_melu_bad_input():
    with pytest.raises(ValueError, match="lecturer_offsets"):
        MeLU(lecturer_offsets=np.zeros(5))
    with pytest.raises(ValueError, match=">= 1"):
        MeLU(embed_dim=0)


def test_inner_step_by_hand_matches_maml_adapt():
    """φ = θ − α ∇ L(θ; 𝒟ˢ) on the decision layers and student offset only (what chapter 06 derives)."""
    torch.manual_seed(0)
    model = MeLU(mu=3.0)
    with torch.no_grad():
        model.decision[-1].weight.normal_(0, 0.1)
    x, y = codes(9, seed=1), torch.randint(1, 6, (9,)).float()
    learner = MAML(model, "mse", alpha=0.3, steps=1, adapt=ADAPT)
    phi = learner.adapt(x, y)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    fast = {k: v for k, v in theta.items() if k.startswith(("decision.", "student_bias"))}

    def loss(f):
        return ((functional_call(model, {**theta, **f}, (x,)) - y) ** 2).mean()

    g = grad(loss)(fast)
    for k, v in theta.items():
        want = v - 0.3 * g[k] if k in fast else v
        assert torch.allclose(phi[k], want, atol=1e-6), k
    # the student offset moves by 2α · mean residual in one step
    resid = (y - functional_call(model, theta, (x,))).mean()
    assert torch.isclose(phi["student_bias"], 2 * 0.3 * resid, atol=1e-5)


def test_adaptation_moves_towards_a_generous_student():
    model = MeLU(mu=3.0)
    x = codes(10, seed=2)
    y = model(x).detach() + 1.0  # this student rates everything one point above the average
    learner = MAML(model, "mse", alpha=0.1, steps=5, adapt=ADAPT)
    phi = learner.adapt(x, y)
    x_new = codes(20, seed=3)
    assert (learner.predict(phi, x_new) > model(x_new)).all()


def test_ndcg_rows_hand_computed_and_against_course_lib():
    y = np.array([[3.0, 5.0, 1.0, 4.0, 2.0]])
    s = np.array([[4.1, 3.9, 3.5, 3.0, 2.2]])
    by_hand = (3 + 5 / np.log2(3) + 1 / 2) / (5 + 4 / np.log2(3) + 3 / 2)
    assert np.isclose(rec.ndcg_at_k_rows(y, s, 3)[0], by_hand)
    assert np.isclose(ndcg_at_k(y[0], s[0], 3), by_hand)
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, (200, 10)).astype(float)
    s = rng.normal(size=(200, 10))
    s[:20] = 3.0                                          # constant predictions: all tied
    s[20:40] = np.round(s[20:40])                         # some ties
    got = rec.ndcg_at_k_rows(y, s, 3)
    want = [ndcg_at_k(y[i], s[i], 3) for i in range(200)]
    assert np.allclose(got, want)
    with pytest.raises(ValueError, match="students, n"):
        rec.ndcg_at_k_rows(y[0], s[0])


def test_per_student_scores_clip_and_agree_with_metrics():
    y = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 4.0]])
    p = np.array([[0.0, 6.0, 3.5], [2.0, 3.0, 4.0]])
    sc = rec.per_student_scores(y, p)
    assert np.isclose(sc["mae"][0], mae(y[0], np.clip(p[0], 1, 5)))
    assert np.isclose(sc["mae"][0], 0.5 / 3)
    with pytest.raises(ValueError, match="NaN"):
        rec.per_student_scores(y, np.full_like(p, np.nan))


def test_catalogue_and_top_k():
    ratings = load_insteval()
    cat = lecturer_catalogue(ratings, studage=2)
    assert cat.shape == (CARDINALITY["lecturer"], 5)
    assert torch.equal(cat[:, 0], torch.arange(CARDINALITY["lecturer"]))
    dept_of = ratings.groupby("lecturer")["dept"].first()
    assert np.array_equal(cat[:, 1].numpy(), dept_of.to_numpy())
    assert (cat[:, 3] == 0).all() and (cat[:, 4] == 2).all()
    scores = torch.arange(10.0)
    assert top_k(scores, 3).tolist() == [9, 8, 7]
    assert top_k(scores, 3, exclude=[9, 7]).tolist() == [8, 6, 5]
    with pytest.raises(ValueError, match="k must be"):
        top_k(scores, 9, exclude=[0, 1])
    with pytest.raises(ValueError, match="studage"):
        lecturer_catalogue(ratings, studage=4)


def test_prepared_data_never_leaks_test_students_into_training():
    data = rec.prepare_data(rec.RecConfig())
    train_students = set(data.train["student"])
    assert train_students == set(data.split.train.tolist())
    assert not train_students & set(data.test.students.tolist())
    assert not train_students & set(data.val.students.tolist())
    sweep = data.tasks("test", 10)
    assert set(sweep.students) <= set(data.test.students) and all(len(p) >= 10 for p in sweep.pool)
    assert len(data.tasks("test", None)) == len(data.split.test)


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="variants"):
        rec.RecConfig(variants=("MAML", "ProtoNet"))
    with pytest.raises(ValueError, match="K in k_sweep"):
        rec.RecConfig(k_sweep=(0, 3))
    with pytest.raises(ValueError, match="test_steps"):
        rec.RecConfig(test_steps=())


def test_cli_writes_the_table(tmp_path, capsys):
    """End to end on a tiny budget: the JSON has every field the chapter and the closing note use."""
    path = tmp_path / "rec.json"
    out = rec.main(["--json", str(path), "--iterations", "3", "--no-progress", "--device", "cpu",
                    "--variants", "MAML", "--quick-baselines"])
    data = json.loads(path.read_text())
    assert data["wall_s"] > 0 and data["rows"] == json.loads(json.dumps(out["rows"]))
    table = pd.DataFrame(data["rows"])
    assert {"method", "kind", "k", "mae", "mae_lo", "mae_hi", "rmse", "ndcg3", "n_students"} <= set(table.columns)
    assert set(table["k"]) == {1, 3, 5, 10, "all"}
    assert set(table["kind"]) == {"baseline", "meta"}
    assert {"global mean", "popularity", "MF fold-in", "MeLU-MAML"} <= set(table["method"])
    assert (table["mae_lo"] <= table["mae"]).all() and (table["mae"] <= table["mae_hi"]).all()
    sweep = table[table["k"] != "all"]
    assert sweep["n_students"].nunique() == 1  # every K is scored on the same test students
    assert table.loc[table["k"] == "all", "n_students"].iloc[0] > sweep["n_students"].iloc[0]
    # the global mean is the worst predictor and never uses the support set
    gm = table[table.method == "global mean"]
    assert gm.loc[gm["k"] != "all", "mae"].nunique() == 1
    assert "MAE" in capsys.readouterr().out.upper()
