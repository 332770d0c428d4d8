"""Chapter 02 checks: right answers pass, placeholders report, typical wrong answers fail helpfully."""

from __future__ import annotations

import pytest
import torch

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch02


def right_sq(a, b):
    return (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1)


def test_squared_euclidean_check():
    assert ch02.check_squared_euclidean(right_sq) is True
    assert ch02.check_squared_euclidean(None) is False
    assert ch02.check_squared_euclidean(lambda a, b: None) is False
    wrong = {
        "no square root": lambda a, b: right_sq(a, b).sqrt(),
        "averaged over features": lambda a, b: right_sq(a, b) / a.shape[-1],
        "must be \\[5, 2\\]": lambda a, b: (a - a).pow(2).sum(-1),
        "compares row i": lambda a, b: right_sq(a, b) + 1,
        "raised IndexError on batches|raised RuntimeError on batches": lambda a, b: (a[:, None, :] - b[None, :, :]).pow(2).sum(-1),
        "per-task distances": lambda a, b: right_sq(a, b) if a.dim() == 2 else right_sq(a, b).sum(0),
    }
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch02.check_squared_euclidean(fn)


def test_linear_classifier_check():
    mu = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]])
    sq = mu.pow(2).sum(-1)
    assert ch02.check_linear_classifier(2 * mu, -sq, mu) is True
    assert ch02.check_linear_classifier(None, None, mu) is False
    cases = [
        (mu, -sq, "missing a factor"),
        (2 * mu, sq, "sign of b is flipped"),
        (2 * mu, -sq.sqrt(), "‖μ_c‖²"),
        (2 * mu, -sq / 2, "no factor 1/2"),
        (2 * mu, -sq + 1, "not −‖μ_c‖²"),
        (2 * mu[:2], -sq[:2], "one row per class"),
        (2 * mu, -sq[:, None], "one entry per class"),
        (-2 * mu, -sq, "coefficient of z"),
    ]
    for W, b, match in cases:
        with pytest.raises(ExerciseError, match=match):
            ch02.check_linear_classifier(W, b, mu)


def test_cosine_center_check():
    x = torch.tensor([[1.0, 0.0], [10.0, 10.0], [0.0, 0.5]])
    best = (x / x.norm(dim=1, keepdim=True)).sum(0)
    assert ch02.check_cosine_center(best, x) is True
    assert ch02.check_cosine_center(3.7 * best, x) is True  # only the direction matters
    assert ch02.check_cosine_center(None, x) is False
    with pytest.raises(ExerciseError, match="plain mean"):
        ch02.check_cosine_center(x.mean(0), x)
    with pytest.raises(ExerciseError, match="zero vector"):
        ch02.check_cosine_center(torch.zeros(2), x)
    with pytest.raises(ExerciseError, match="2 coordinates"):
        ch02.check_cosine_center(torch.ones(3), x)
    with pytest.raises(ExerciseError, match="reachable"):
        ch02.check_cosine_center(torch.tensor([1.0, -1.0]), x)


def right_recommend(dist, worked, k):
    nearest = dist.topk(k, dim=1, largest=False).indices
    return worked[nearest].mode(dim=1).values


def test_knn_recommend_check():
    assert ch02.check_knn_recommend(right_recommend) is True
    assert ch02.check_knn_recommend(None) is False
    assert ch02.check_knn_recommend(lambda d, w, k: None) is False
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
