"""Chapter 06 exercise checks: right answers pass, placeholders do not raise, typical mistakes fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.baselines.popularity import Popularity
from course_lib.exercises import ExerciseError
from course_lib.exercises import ch06
from course_lib.metrics import ndcg_at_k


def popularity_right(lecturers, ratings, n_lecturers, shrinkage):
    mu = ratings.mean()
    total = np.bincount(lecturers, weights=ratings - mu, minlength=n_lecturers)
    count = np.bincount(lecturers, minlength=n_lecturers)
    return mu + total / (count + shrinkage + (count + shrinkage == 0))


def test_placeholders_return_false_without_raising(capsys):
    assert ch06.check_popularity(None) is False
    assert ch06.check_ndcg(None) is False
    assert ch06.check_fold_in(None) is False
    assert ch06.check_popularity(lambda lect, r, n, lam: None) is False  # the notebook's unfilled stub
    assert ch06.check_fold_in(lambda res, lam: None) is False
    assert "Not filled in yet" in capsys.readouterr().out


def test_popularity_right_answer_agrees_with_course_lib():
    assert ch06.check_popularity(popularity_right)
    lect, r = np.array([0, 0, 1, 3]), np.array([5.0, 4.0, 1.0, 2.0])
    lib = Popularity(shrinkage=2.0).fit(np.zeros(4, int), lect, r, n_lecturers=4)
    assert np.allclose(popularity_right(lect, r, 4, 2.0), lib.predict(np.arange(4)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("wrong, hint", [
    (lambda l, r, n, lam: np.array([r[l == j].mean() if (l == j).any() else r.mean() for j in range(n)]),
     "does not change with the shrinkage"),
    (lambda l, r, n, lam: np.array([r[l == j].sum() / ((l == j).sum() + lam) if (l == j).any() else r.mean()
                                    for j in range(n)]), "towards 0"),
    (lambda l, r, n, lam: np.full(n, r.mean())[:3], "shape"),
    (lambda l, r, n, lam: r.mean() + np.bincount(l, r - r.mean(), n) / np.bincount(l, minlength=n), "NaN"),
])
def test_popularity_typical_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ch06.check_popularity(wrong)


def test_ndcg_right_answer_and_mistakes():
    ex = ch06.NDCG_EXAMPLE
    right = ndcg_at_k(ex["ratings"], ex["scores"], k=3)
    # by hand: top-3 by score are ratings 3, 5, 1 -> DCG = 3 + 5/log2(3) + 1/2; ideal: 5, 4, 3
    by_hand = (3 + 5 / np.log2(3) + 1 / 2) / (5 + 4 / np.log2(3) + 3 / 2)
    assert np.isclose(right, by_hand)
    assert ch06.check_ndcg(by_hand)
    with pytest.raises(ExerciseError, match="DCG@3"):
        ch06.check_ndcg(3 + 5 / np.log2(3) + 1 / 2)
    with pytest.raises(ExerciseError, match=r"\(0, 1\]"):
        ch06.check_ndcg(1.7)
    with pytest.raises(ExerciseError, match="sort the lecturers"):
        ch06.check_ndcg(0.5)


def test_fold_in_right_answer_and_mistakes():
    assert ch06.check_fold_in(lambda res, lam: res.sum() / (len(res) + lam))
    with pytest.raises(ExerciseError, match="plain mean"):
        ch06.check_fold_in(lambda res, lam: res.mean())
    with pytest.raises(ExerciseError, match="expected"):
        ch06.check_fold_in(lambda res, lam: res.sum() / (len(res) + 2 * lam))
    with pytest.raises(ExerciseError, match="raised"):
        ch06.check_fold_in(lambda res, lam: undefined_name)  # noqa: F821


def test_posterior_interest_right_answer_agrees_with_bayes_scores_and_mistakes_fail():
    from course_lib.data.resource_text import LearnerModel, SimulatedRatings, bayes_scores

    def right(m, s2, y, noise):
        return (m / s2 + np.sum(y) / noise) / (1 / s2 + len(y) / noise)

    assert ch06.check_posterior_interest(None) is False
    assert ch06.check_posterior_interest(lambda m, s2, y, noise: None) is False
    assert ch06.check_posterior_interest(right) is True
    with pytest.raises(ExerciseError, match="ignores the prior"):
        ch06.check_posterior_interest(lambda m, s2, y, noise: np.mean(y) if len(y) else m)
    with pytest.raises(ExerciseError, match="expected"):
        ch06.check_posterior_interest(lambda m, s2, y, noise: (m + np.sum(y)) / (1 + len(y)))
    # the one-domain answer is what bayes_scores computes (bias and quality fixed at ~0, one domain)
    model = LearnerModel(np.array([0.2]), np.array([[0.5]]), sigma_bias=1e-4, sigma_quality=1e-4, sigma_noise=0.5)
    sim = SimulatedRatings(model, np.zeros(4, np.int64), np.zeros(4), np.array([True, True, True, False]),
                           np.zeros((1, 1)), np.zeros(1), np.array([[0, 1, 2]]), np.array([[1.0, 0.4, 1.3]]))
    got = bayes_scores(sim, sim.items, sim.ratings, np.array([3]))[0, 0]
    assert got == pytest.approx(right(0.2, 0.5, np.array([1.0, 0.4, 1.3]), 0.25), abs=1e-4)


def test_fold_in_that_calls_the_library_is_rejected():
    from course_lib.baselines.matrix_factorization import MatrixFactorization

    def via_library(residuals, reg_bias):
        mf = MatrixFactorization(rank=0, reg_bias=reg_bias)
        return mf.fold_in([0] * len(residuals), residuals)

    with pytest.raises(ExerciseError, match="your answer calls"):
        ch06.check_fold_in(via_library)
