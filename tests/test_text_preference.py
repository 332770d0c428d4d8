"""Tests for course_lib.models.text_preference: the text model, its tasks and utility@n."""

import numpy as np
import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.models.text_preference import (ADAPT_TEXT, TextPreference, adapted_scores, support_batch,
                                               text_task_sampler, utility_at)


def test_adaptation_moves_only_the_learner_parameters():
    torch.manual_seed(0)
    model = TextPreference(6, dim=3)
    with torch.no_grad():
        model.project.weight.normal_()
    learner = MAML(model, "mse", alpha=0.3, steps=2, adapt=ADAPT_TEXT)
    x = torch.randn(4, 6)
    phi = learner.adapt(x, torch.randn(4))
    for name, value in phi.items():
        same = torch.equal(value, learner.theta[name].detach())
        assert same != (name in ADAPT_TEXT), name


def test_a_resource_is_scored_from_its_features_alone():
    """Two resources with the same text get the same score: nothing is indexed by resource."""
    features = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    features[4] = features[1]
    model = TextPreference(4, dim=2)
    learner = MAML(model, "mse", alpha=0.3, steps=1, adapt=ADAPT_TEXT)
    batch = support_batch(features, np.array([[0, 2]]), np.array([[1.0, -1.0]]), np.array([1, 3, 4]))
    scores = adapted_scores(learner, batch, 3)
    assert scores.shape == (1, 3) and scores[0, 0] == pytest.approx(scores[0, 2])


def test_sampler_masks_k_shots_between_one_and_the_maximum():
    rng = np.random.default_rng(0)
    items = np.stack([rng.permutation(30)[:20] for _ in range(8)])
    sample = text_task_sampler(rng.normal(size=(30, 4)), items, rng.normal(size=(8, 20)), 64)
    batch = sample(torch.Generator().manual_seed(0))
    k_shots = batch.support_mask.sum(1)
    assert batch.x_support.shape == (64, 10, 4) and batch.x_query.shape == (64, 10, 4)
    assert k_shots.min() >= 1 and k_shots.max() <= 10 and len(set(k_shots.tolist())) > 3
    with pytest.raises(ValueError, match="n_rated|>= 20"):
        text_task_sampler(rng.normal(size=(30, 4)), items[:, :5], rng.normal(size=(8, 5)), 4)


def test_utility_of_the_truth_is_the_maximum_and_invariant_to_monotone_maps():
    expected = np.random.default_rng(1).normal(size=(20, 30))
    best = utility_at(expected, expected, 5)
    np.testing.assert_allclose(best, np.sort(expected, 1)[:, -5:].mean(1))
    noisy = expected + np.random.default_rng(2).normal(size=expected.shape)
    assert (utility_at(noisy, expected, 5) <= best + 1e-12).all()
    np.testing.assert_allclose(utility_at(np.exp(noisy), expected, 5), utility_at(noisy, expected, 5))
    with pytest.raises(ValueError, match="n must"):
        utility_at(expected, expected, 31)
