"""The MeLU-style preference model, its inner step, scoring and recommendation helpers (chapter 06)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad

from course_lib.algorithms import MAML
from course_lib.data.insteval import CARDINALITY, load_insteval
from course_lib.metrics import mae
from course_lib.models.preference import ADAPT, MeLU, lecturer_catalogue, rating_scores, top_k


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
    with pytest.raises(ValueError, match="features must be distinct names"):
        MeLU(features=("lecturer", "semester"))


def test_melu_without_covariates_ignores_them():
    """features=("lecturer",): the ablation of chapter 06, section 11 sees only the lecturer code."""
    torch.manual_seed(0)
    model = MeLU(mu=3.0, features=("lecturer",))
    assert set(model.embed) == {"lecturer"} and model.decision[0].in_features == 8
    with torch.no_grad():
        model.decision[-1].weight.normal_()
    x = codes(6)
    other = x.clone()
    other[:, 1:] = (other[:, 1:] + 1) % 2  # change every covariate, keep the lecturer
    assert torch.allclose(model(x), model(other))


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

def test_rating_scores_clip_and_agree_with_metrics():
    y = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 4.0]])
    p = np.array([[0.0, 6.0, 3.5], [2.0, 3.0, 4.0]])
    sc = rating_scores(y, p)
    assert np.isclose(sc["mae"][0], mae(y[0], np.clip(p[0], 1, 5)))
    assert np.isclose(sc["mae"][0], 0.5 / 3)
    with pytest.raises(ValueError, match="NaN"):
        rating_scores(y, np.full_like(p, np.nan))


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



def test_predictions_and_choose_steps_on_a_generous_student_batch():
    """0 steps predicts with θ; choose_steps returns the argmin of the MAE grid it reports, per K."""
    from course_lib.models.preference import choose_steps, predictions
    from course_lib.tasks import TaskBatch

    model = MeLU(mu=3.0)
    xs, xq = codes(4 * 5, seed=4).reshape(4, 5, 5), codes(4 * 6, seed=5).reshape(4, 6, 5)
    ys = (model(xs).detach() + 1.0).clamp(1, 5)
    yq = (model(xq).detach() + 1.0).clamp(1, 5)
    batch = TaskBatch(xs, ys, xq, yq)
    learner = MAML(model, "mse", alpha=0.1, steps=1, adapt=ADAPT)
    assert np.allclose(predictions(learner, batch, 0), model(xq).detach().numpy())
    steps, grid = choose_steps(learner, {"5": (batch, yq.numpy())}, candidates=(0, 1, 5))
    assert steps["5"] == min(grid["5"], key=grid["5"].get)
    assert steps["5"] > 0 and grid["5"][5] < grid["5"][0]  # adapting to a generous student helps
    with pytest.raises(ValueError, match="candidates"):
        choose_steps(learner, {"5": (batch, yq.numpy())}, candidates=())


def test_training_settings_are_checked():
    from course_lib.models.preference import MeLUTraining, meta_train

    with pytest.raises(ValueError, match="reptile_outer"):
        MeLUTraining(reptile_outer="rmsprop")
    with pytest.raises(ValueError, match=">= 1"):
        MeLUTraining(steps=0)
    with pytest.raises(ValueError, match="variant"):
        meta_train("ProtoNet", None, np.arange(3), {})
