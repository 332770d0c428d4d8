"""course_lib.models.learner_model: the model's formula, meta-training, and the per-learner fit."""

from __future__ import annotations

import pytest
import torch

from course_lib.data.synthetic_learners import make_learners
from course_lib.models.learner_model import ADAPT, LearnerModel, fit_per_learner_heads, meta_train


def test_forward_is_head_times_features_and_embedding_plus_offset():
    pop = make_learners(10, 12, seed=0)
    model = LearnerModel(pop.public_features, embed_dim=2, seed=3)
    with torch.no_grad():
        model.offset.weight.normal_(generator=torch.Generator().manual_seed(1))
        items = torch.tensor([0, 5, 11])
        x = torch.cat([pop.public_features[items].float(), model.embed.weight[items]], 1)
        expected = x @ model.head.weight[0] + model.offset.weight[items, 0]
        torch.testing.assert_close(model(items), expected)
    assert [n for n, _ in model.named_parameters() if n.startswith(tuple(ADAPT))] == ["head.weight"]


def test_meta_train_moves_one_theta_for_every_k_and_logs_each_k():
    pop = make_learners(60, 30, seed=1)
    model = LearnerModel(pop.public_features, seed=0)
    before = {n: v.detach().clone() for n, v in model.named_parameters()}
    hist = meta_train(model, pop.responses, torch.arange(60), {1: (0.5, 1), 4: (0.3, 2)}, iterations=20,
                      meta_batch=8, n_query=6, beta=0.01, adapt=ADAPT, progress=False)
    assert hist["iteration"] == [20] and set(hist["loss"]) == {1, 4}
    assert all(len(v) == 1 and v[0] > 0 for v in hist["loss"].values())
    assert all(not torch.equal(before[n], v) for n, v in model.named_parameters())
    with pytest.raises(ValueError, match="at least one K"):
        meta_train(model, pop.responses, torch.arange(60), {}, iterations=1)


def test_cells_with_weight_zero_do_not_influence_the_per_learner_fit():
    pop = make_learners(30, 20, seed=2)
    y = pop.responses.nan_to_num(0.0)
    weight = (~torch.isnan(pop.responses)).float()
    weight[:, :5] = 0.0
    flipped = y.clone()
    flipped[:, :5] = 1 - flipped[:, :5]
    fits = [fit_per_learner_heads(LearnerModel(pop.public_features, seed=0), answers, weight, steps=20,
                                  progress=False) for answers in (y, flipped)]
    torch.testing.assert_close(fits[0], fits[1])
    assert fits[0].shape == y.shape and ((fits[0] > 0) & (fits[0] < 1)).all()
    with pytest.raises(ValueError, match="NaN"):
        fit_per_learner_heads(LearnerModel(pop.public_features), pop.responses, weight, steps=1)
    with pytest.raises(ValueError, match="must both be"):
        fit_per_learner_heads(LearnerModel(pop.public_features), y, weight[:, :3], steps=1)
