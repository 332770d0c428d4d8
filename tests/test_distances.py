"""course_lib.distances: agreement with scipy's cdist, metric properties, batch shapes, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from course_lib import distances as D


@pytest.fixture
def ab() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name, scipy_name", [("euclidean", "euclidean"), ("squared_euclidean", "sqeuclidean"),
                                              ("cosine", "cosine")])
def test_matches_scipy_cdist(ab, name, scipy_name):
    a, b = ab
    expected = cdist(a.numpy(), b.numpy(), scipy_name)
    np.testing.assert_allclose(D.pairwise(a, b, name).numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(D.get_distance(name)(a, b).numpy(), expected, rtol=1e-10, atol=1e-10)


def test_cosine_similarity_is_one_minus_cosine_distance(ab):
    a, b = ab
    torch.testing.assert_close(D.cosine_similarity(a, b), 1 - D.cosine(a, b))
    assert D.cosine_similarity(a, b).abs().max() <= 1 + 1e-12


def test_mahalanobis_matches_scipy_with_cov_and_precision(ab):
    a, b = ab
    g = torch.Generator().manual_seed(1)
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov = m @ m.T + 0.5 * torch.eye(5, dtype=torch.float64)
    vi = torch.linalg.inv(cov)
    expected = cdist(a.numpy(), b.numpy(), "mahalanobis", VI=vi.numpy())
    np.testing.assert_allclose(D.mahalanobis(a, b, cov=cov).numpy(), expected, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(D.mahalanobis(a, b, precision=vi).numpy(), expected, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(D.pairwise(a, b, "mahalanobis", cov=cov).numpy(), expected, rtol=1e-8, atol=1e-8)


def test_mahalanobis_with_identity_is_euclidean(ab):
    a, b = ab
    eye = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(D.mahalanobis(a, b, cov=eye), D.euclidean(a, b))


@pytest.mark.parametrize("name", ["euclidean", "squared_euclidean", "cosine"])
def test_symmetric_nonnegative_zero_diagonal(name):
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = D.pairwise(x, x, name)
    torch.testing.assert_close(d, d.T)
    assert (d >= 0).all()
    torch.testing.assert_close(torch.diagonal(d), torch.zeros(9, dtype=torch.float64), atol=1e-7, rtol=0)


def test_triangle_inequality_euclidean_and_mahalanobis():
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cov = D.shrunk_covariance(x)
    for d in (D.euclidean(x, x), D.mahalanobis(x, x, cov=cov)):
        # d(i, k) <= d(i, j) + d(j, k) for every triple
        assert (d[:, None, :] <= d[:, :, None] + d[None, :, :] + 1e-9).all()


def test_squared_euclidean_violates_triangle_inequality():
    # Not a metric: 0, 1, 2 on a line gives 4 > 1 + 1. (Chapter 02 uses this as a pitfall.)
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    d = D.squared_euclidean(x, x)
    assert d[0, 2] > d[0, 1] + d[1, 2]


@pytest.mark.parametrize("name", ["euclidean", "squared_euclidean", "cosine"])
def test_batch_shapes_and_broadcasting(name):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(3, 7, 5, generator=g)
    b = torch.randn(3, 4, 5, generator=g)
    out = D.pairwise(a, b, name)
    assert out.shape == (3, 7, 4)
    for t in range(3):  # batched equals per-slice
        torch.testing.assert_close(out[t], D.pairwise(a[t], b[t], name), rtol=1e-5, atol=1e-5)
    # a shared b broadcasts over the task dimension; extra leading dims work
    assert D.pairwise(a, b[0], name).shape == (3, 7, 4)
    assert D.pairwise(a[None].expand(2, 3, 7, 5), b, name).shape == (2, 3, 7, 4)


def test_mahalanobis_batched():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 6, 3, generator=g, dtype=torch.float64), torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    cov = D.shrunk_covariance(torch.cat([a[0], b[0]]), shrinkage=0.2)
    out = D.mahalanobis(a, b, cov=cov)
    assert out.shape == (2, 6, 5)
    vi = torch.linalg.inv(cov).numpy()
    np.testing.assert_allclose(out[1].numpy(), cdist(a[1].numpy(), b[1].numpy(), "mahalanobis", VI=vi), rtol=1e-8)


def test_shrunk_covariance_matches_sklearn_and_is_positive_definite():
    from sklearn.covariance import LedoitWolf

    x = np.random.default_rng(0).normal(size=(4, 10))  # fewer examples than features: S is singular
    with pytest.raises(ValueError, match="singular|shrunk_covariance"):
        D.mahalanobis(torch.zeros(1, 10, dtype=torch.float64), torch.ones(1, 10, dtype=torch.float64),
                      cov=torch.as_tensor(np.cov(x.T)))
    cov = D.shrunk_covariance(torch.as_tensor(x))
    np.testing.assert_allclose(cov.numpy(), LedoitWolf().fit(x).covariance_)
    assert torch.linalg.eigvalsh(cov).min() > 0
    assert D.shrunk_covariance(x, shrinkage=0.3).dtype == torch.get_default_dtype()
    assert D.shrunk_covariance(torch.as_tensor(x, dtype=torch.float32)).dtype == torch.float32


def test_gradients_are_finite_at_zero_distance():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    for name in ("euclidean", "squared_euclidean", "cosine"):
        D.pairwise(x, x.detach(), name).sum().backward()
        assert torch.isfinite(x.grad).all(), name
        x.grad = None


def test_zero_vector_cosine_is_defined():
    a = torch.zeros(1, 3)
    b = torch.ones(2, 3)
    torch.testing.assert_close(D.cosine(a, b), torch.ones(1, 2))


@pytest.mark.parametrize("a, b, match", [
    (torch.zeros(3, 4), torch.zeros(2, 5), "feature dimensions differ"),
    (torch.tensor([[float("nan"), 0.0]]), torch.zeros(2, 2), "NaN"),
    (torch.zeros(4), torch.zeros(2, 4), r"\[\.\.\., rows, features\]"),
    (torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, 4), "floating-point"),
    (torch.zeros(3, 4), torch.zeros(2, 4, dtype=torch.float64), "cast"),
    (torch.zeros(2, 3, 4), torch.zeros(5, 2, 4), "do not broadcast"),
    (torch.zeros(0, 4), torch.zeros(2, 4), "no rows"),
    (np.zeros((3, 4)), torch.zeros(2, 4), "torch.Tensor"),
])
def test_bad_inputs_raise_clear_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        D.pairwise(a, b, "euclidean")


def test_bad_metric_arguments():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown distance"):
        D.get_distance("manhattan")
    with pytest.raises(ValueError, match="cov= or precision="):
        D.get_distance("mahalanobis")
    with pytest.raises(ValueError, match="exactly one"):
        D.mahalanobis(a, a)
    with pytest.raises(ValueError, match="exactly one"):
        D.mahalanobis(a, a, cov=torch.eye(3), precision=torch.eye(3))
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        D.mahalanobis(a, a, cov=torch.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        D.mahalanobis(a, a, cov=torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="singular"):
        D.mahalanobis(a, a, cov=torch.diag(torch.tensor([1.0, 1.0, 0.0])))
    with pytest.raises(ValueError, match="takes no parameters"):
        D.get_distance("cosine", cov=torch.eye(3))
    with pytest.raises(ValueError, match="shrinkage"):
        D.shrunk_covariance(torch.randn(5, 3), shrinkage=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        D.shrunk_covariance(torch.randn(1, 3))


def test_custom_callable_metric_passes_through():
    manhattan = lambda a, b: (a[..., :, None, :] - b[..., None, :, :]).abs().sum(-1)  # noqa: E731
    a, b = torch.randn(3, 2), torch.randn(4, 2)
    np.testing.assert_allclose(D.pairwise(a, b, manhattan).numpy(), cdist(a.numpy(), b.numpy(), "cityblock"),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="returned shape"):
        D.pairwise(a, b, lambda a, b: a.sum())


def test_unvalidated_kernels_agree_and_skip_the_checks(ab):
    a, b = ab
    for name in ("euclidean", "squared_euclidean", "cosine"):
        fast = D.get_distance(name, validate=False)
        assert torch.equal(fast(a, b), D.get_distance(name)(a, b))
        with pytest.raises(ValueError):
            D.get_distance(name)(a, b.float())           # the checked metric says what is wrong ...
        assert fast is not D.DISTANCES[name]             # ... the kernel trusts its inputs
    with pytest.raises(ValueError, match="unknown distance"):
        D.get_distance("manhattan", validate=False)
