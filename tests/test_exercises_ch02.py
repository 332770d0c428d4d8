"""Chapter 02 checks: right answers pass, placeholders report, typical wrong answers fail helpfully,
answers that call the implementation being asked for are rejected, and inputs are fresh at every call."""

from __future__ import annotations

import pytest
import torch
from notebook_solutions import notebook_solutions

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch02

SOLUTIONS = notebook_solutions("02")


def right_sq(a, b):
    return (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1)


def right_recommend(dist, worked, k):
    nearest = dist.topk(k, dim=1, largest=False).indices
    return worked[nearest].mode(dim=1).values


@pytest.mark.parametrize("check, name", [(ch02.check_squared_euclidean, "my_squared_euclidean_solution"),
                                         (ch02.check_cosine_center, "cosine_center_solution"),
                                         (ch02.check_linear_classifier, "linear_classifier_solution"),
                                         (ch02.check_knn_recommend, "recommend_solution")])
def test_the_notebooks_solutions_pass_and_placeholders_report(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out
    assert check(None) is False
    assert check(lambda *args: None) is False
    assert "Not filled in yet" in capsys.readouterr().out


def test_squared_euclidean_check():
    assert ch02.check_squared_euclidean(right_sq) is True
    wrong = {
        "no square root": lambda a, b: right_sq(a, b).sqrt(),
        "averaged over features": lambda a, b: right_sq(a, b) / a.shape[-1],
        "must be \\[": lambda a, b: (a - a).pow(2).sum(-1),
        "compares row i": lambda a, b: right_sq(a, b) + 1,
        "raised IndexError on batches|raised RuntimeError on batches": lambda a, b: (a[:, None, :] - b[None, :, :]).pow(2).sum(-1),
        "per-task distances": lambda a, b: right_sq(a, b) if a.dim() == 2 else right_sq(a, b).sum(0),
        "must be \\[.*got \\(\\d, \\d\\)": lambda a, b: right_sq(a, b).transpose(-1, -2),
    }
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch02.check_squared_euclidean(fn)


def test_linear_classifier_check():
    def from_parts(W_of, b_of):
        return lambda mu: (W_of(mu), b_of(mu))

    sq = lambda mu: mu.pow(2).sum(-1)  # noqa: E731
    assert ch02.check_linear_classifier(from_parts(lambda mu: 2 * mu, lambda mu: -sq(mu))) is True
    cases = [
        (lambda mu: mu, lambda mu: -sq(mu), "missing a factor"),
        (lambda mu: 2 * mu, sq, "sign of b is flipped"),
        (lambda mu: 2 * mu, lambda mu: -sq(mu).sqrt(), "‖μ_c‖²"),
        (lambda mu: 2 * mu, lambda mu: -sq(mu) / 2, "no factor 1/2"),
        (lambda mu: 2 * mu, lambda mu: -sq(mu) + 1, "not −‖μ_c‖²"),
        (lambda mu: 2 * mu[:2], lambda mu: -sq(mu)[:2], "one row per class"),
        (lambda mu: 2 * mu, lambda mu: -sq(mu)[:, None], "one entry per class"),
        (lambda mu: -2 * mu, lambda mu: -sq(mu), "coefficient of z"),
    ]
    for W_of, b_of, match in cases:
        with pytest.raises(ExerciseError, match=match):
            ch02.check_linear_classifier(from_parts(W_of, b_of))
    with pytest.raises(ExerciseError, match="pair"):
        ch02.check_linear_classifier(lambda mu: 2 * mu)


def test_cosine_center_check():
    def best(x):
        return (x / x.norm(dim=1, keepdim=True)).sum(0)

    assert ch02.check_cosine_center(best) is True
    assert ch02.check_cosine_center(lambda x: 3.7 * best(x)) is True  # only the direction matters
    with pytest.raises(ExerciseError, match="plain mean"):
        ch02.check_cosine_center(lambda x: x.mean(0))
    with pytest.raises(ExerciseError, match="zero vector"):
        ch02.check_cosine_center(lambda x: torch.zeros(x.shape[1]))
    with pytest.raises(ExerciseError, match="coordinates"):
        ch02.check_cosine_center(lambda x: torch.ones(x.shape[1] + 1))
    with pytest.raises(ExerciseError, match="reachable"):
        ch02.check_cosine_center(lambda x: x[0])


def test_knn_recommend_check():
    assert ch02.check_knn_recommend(right_recommend) is True
    farthest = lambda d, w, k: w[d.topk(k, dim=1).indices].mode(dim=1).values  # noqa: E731
    with pytest.raises(ExerciseError, match="farthest"):
        ch02.check_knn_recommend(farthest)
    with pytest.raises(ExerciseError, match="one resource per new learner"):
        ch02.check_knn_recommend(lambda d, w, k: w)
    with pytest.raises(ExerciseError, match="raised"):
        ch02.check_knn_recommend(lambda d, w, k: 1 / 0)
    first_k = lambda d, w, k: w[:k].mode().values.repeat(d.shape[0])  # noqa: E731  ignores distances
    with pytest.raises(ExerciseError, match="n_neighbors smallest"):
        ch02.check_knn_recommend(first_k)


def knn_recommend(dist, worked, n_neighbors):
    """Stands in for chapter 02's own `knn_recommend` of section 8 (a global of the notebook)."""
    return right_recommend(dist, worked, n_neighbors)


def minimise_sum(fn, x, cov):
    """Stands in for chapter 02's numerical minimiser of section 4 (a global of the notebook)."""
    return (x / x.norm(dim=1, keepdim=True)).sum(0), None


def test_answers_that_call_the_library_are_rejected():
    import scipy.spatial.distance

    from course_lib.algorithms.protonet import prototype_linear_classifier
    from course_lib.distances import pairwise, squared_euclidean

    cases = [(ch02.check_squared_euclidean, lambda a, b: squared_euclidean(a, b), "squared_euclidean"),
             (ch02.check_squared_euclidean, lambda a, b: pairwise(a, b, "squared_euclidean"), "pairwise"),
             (ch02.check_squared_euclidean, lambda a, b: torch.cdist(a, b) ** 2, "cdist"),
             (ch02.check_squared_euclidean,
              lambda a, b: torch.tensor(scipy.spatial.distance.cdist(a, b, "sqeuclidean")), "cdist"),
             (ch02.check_linear_classifier, lambda mu: prototype_linear_classifier(mu), "prototype_linear_classifier"),
             (ch02.check_cosine_center, lambda x: minimise_sum(None, x, None)[0], "`minimise_sum`"),
             (ch02.check_knn_recommend, lambda d, w, k: knn_recommend(d, w, k), "`knn_recommend`")]
    for check, answer, name in cases:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(dist, worked, k):
        seen.append(dist.clone())
        return right_recommend(dist, worked, k)

    ch02.check_knn_recommend(recording)
    ch02.check_knn_recommend(recording)
    assert seen[0].shape != seen[-1].shape or not torch.equal(seen[0], seen[-1])
