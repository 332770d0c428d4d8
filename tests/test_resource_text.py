"""Tests for course_lib.data.resource_text: the real texts, the simulator and the Bayes ceiling."""

import numpy as np
import pytest

from course_lib.data.resource_text import (DOMAINS, LearnerModel, bayes_scores, load_resource_texts,
                                           simulate_ratings, text_features)


@pytest.fixture(scope="module")
def texts():
    return load_resource_texts()


def test_texts_match_the_data_card(texts):
    assert len(texts) == 972
    assert texts.domain.nunique() == len(DOMAINS)
    assert texts.groupby("domain").size()["economics"] == 374
    assert texts.text.str.len().min() > 50
    assert not texts.text.str.contains("R Documentation").any()


def test_features_of_warm_resources_do_not_depend_on_cold_texts(texts):
    warm = np.arange(len(texts)) % 5 != 0
    a = text_features(texts.text, warm, 16)
    changed = texts.text.copy()
    changed[~warm] = "survival hazard censoring regression " * 5
    b = text_features(changed, warm, 16)
    np.testing.assert_allclose(a[warm], b[warm], atol=1e-5)
    assert not np.allclose(a[~warm], b[~warm])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_text_features_validate(texts):
    with pytest.raises(ValueError, match="n_components"):
        text_features(texts.text, np.ones(len(texts), bool), 5000)
    with pytest.raises(ValueError, match="fit_on"):
        text_features(texts.text, np.ones(3, bool))


def test_simulation_never_rates_cold_resources_and_follows_its_model():
    domain = np.repeat(np.arange(7), 40)
    sim = simulate_ratings(domain, LearnerModel.default(), 3000, n_rated=20, seed=1)
    assert not np.isin(sim.items, np.flatnonzero(~sim.warm)).any()
    assert all((~sim.warm[domain == d]).sum() == 8 for d in range(7))
    learners = np.arange(3000)[:, None]
    residual = sim.ratings - sim.expected(np.arange(3000), np.arange(len(domain)))[learners, sim.items]
    assert abs(residual.mean()) < 0.01 and abs(residual.std() - 0.5) < 0.01


def test_learner_model_validates():
    with pytest.raises(ValueError, match="positive-definite"):
        LearnerModel(np.zeros(2), -np.eye(2))


def test_bayes_scores_equal_gaussian_conditioning_in_its_other_form():
    """E[z | y] = μ + S Φᵀ (Φ S Φᵀ + σ² I)⁻¹ (y − q − Φ μ): the covariance form of the same posterior."""
    domain = np.repeat(np.arange(7), 10)
    sim = simulate_ratings(domain, LearnerModel.default(seed=3), 5, n_rated=12, seed=2)
    m = sim.model
    targets = np.flatnonzero(~sim.warm)
    got = bayes_scores(sim, sim.items[:, :6], sim.ratings[:, :6], targets)
    design = np.concatenate([np.ones((len(domain), 1)), np.eye(7)[domain]], 1)
    mu = np.concatenate([[0.0], m.mean])
    cov = np.zeros((8, 8))
    cov[0, 0], cov[1:, 1:] = m.sigma_bias ** 2, m.cov
    for i in range(5):
        phi = design[sim.items[i, :6]]
        gain = cov @ phi.T @ np.linalg.inv(phi @ cov @ phi.T + m.sigma_noise ** 2 * np.eye(6))
        post = mu + gain @ (sim.ratings[i, :6] - sim.quality[sim.items[i, :6]] - phi @ mu)
        np.testing.assert_allclose(got[i], design[targets] @ post, atol=1e-4)


def test_bayes_scores_approach_the_truth_with_many_ratings():
    domain = np.repeat(np.arange(7), 60)
    sim = simulate_ratings(domain, LearnerModel.default(), 50, n_rated=300, seed=0)
    targets = np.flatnonzero(~sim.warm)
    truth = sim.expected(np.arange(50), targets) - sim.quality[targets]
    few = np.abs(bayes_scores(sim, sim.items[:, :2], sim.ratings[:, :2], targets) - truth).mean()
    many = np.abs(bayes_scores(sim, sim.items, sim.ratings, targets) - truth).mean()
    assert many < 0.1 < few
