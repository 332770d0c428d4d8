"""ProtoNet: the linear-classifier identity, batched = per-task, masks, determinism, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.algorithms.protonet import ProtoNet, class_prototypes, prototype_linear_classifier
from course_lib.distances import pairwise
from course_lib.tasks import TaskBatch, sample_episodes


def blobs(n_classes: int = 8, per_class: int = 30, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters: a labelled dataset on which a ProtoNet can learn quickly."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_classes, dim, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = centres[y] + torch.randn(len(y), dim, generator=g)
    return x, y


def embedding(dim: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture
def batch() -> TaskBatch:
    x, y = blobs()
    return sample_episodes(x, y, n_way=3, k_shot=2, n_query=4, n_tasks=5, generator=torch.Generator().manual_seed(1))


def test_prototypes_are_class_means(batch):
    net = ProtoNet(nn.Identity())
    protos = net.prototypes(batch.x_support, batch.y_support)
    assert protos.shape == (5, 3, 6)
    for t in range(5):
        for c in range(3):
            torch.testing.assert_close(protos[t, c], batch.x_support[t][batch.y_support[t] == c].mean(0))


def test_squared_euclidean_logits_are_the_linear_classifier(batch):
    net = ProtoNet(embedding(), "squared_euclidean")
    logits = net.logits(batch)
    z_s, z_q = net.embed(batch.x_support), net.embed(batch.x_query)
    W, b = prototype_linear_classifier(net.prototypes(z_s, batch.y_support))
    linear = z_q @ W.transpose(-1, -2) + b[:, None, :]
    # −‖z − μ‖² = (2μ·z − ‖μ‖²) − ‖z‖²: equal up to a per-query constant ...
    torch.testing.assert_close(logits + z_q.pow(2).sum(-1, keepdim=True), linear, rtol=1e-4, atol=1e-4)
    # ... so the same softmax and the same decisions
    torch.testing.assert_close(logits.softmax(-1), linear.softmax(-1), rtol=1e-4, atol=1e-5)
    assert torch.equal(logits.argmax(-1), linear.argmax(-1))


@pytest.mark.parametrize("distance", ["squared_euclidean", "euclidean", "cosine"])
def test_logits_are_minus_pairwise_distance(batch, distance):
    net = ProtoNet(embedding(), distance)
    z_s, z_q = net.embed(batch.x_support), net.embed(batch.x_query)
    expected = -pairwise(z_q, net.prototypes(z_s, batch.y_support), distance)
    torch.testing.assert_close(net.logits(batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("distance", ["squared_euclidean", "cosine"])
def test_batched_equals_per_task_loop(batch, distance):
    net = ProtoNet(embedding(), distance)
    loss = net.loss(batch)
    per_task = torch.stack([net.loss(batch.task(i)) for i in range(batch.n_tasks)])
    torch.testing.assert_close(loss, per_task.mean(), rtol=1e-5, atol=1e-6)
    logits = net.logits(batch)
    for i in range(batch.n_tasks):
        torch.testing.assert_close(logits[i], net.logits(batch.task(i))[0], rtol=1e-5, atol=1e-5)
    acc = net.accuracy(batch, per_task=True)
    torch.testing.assert_close(acc, torch.stack([net.accuracy(batch.task(i)) for i in range(batch.n_tasks)]))
    # gradients agree as well
    g1 = torch.autograd.grad(loss, list(net.theta.values()))
    g2 = torch.autograd.grad(per_task.mean(), list(net.theta.values()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_support_mask_ignores_padding(batch):
    net = ProtoNet(embedding())
    garbage = 100 * torch.ones(batch.n_tasks, 2, 6)
    padded = TaskBatch(torch.cat([batch.x_support, garbage], 1),
                       torch.cat([batch.y_support, torch.zeros(batch.n_tasks, 2, dtype=torch.long)], 1),
                       batch.x_query, batch.y_query,
                       support_mask=torch.cat([torch.ones(batch.n_tasks, 6, dtype=torch.bool),
                                               torch.zeros(batch.n_tasks, 2, dtype=torch.bool)], 1))
    torch.testing.assert_close(net.logits(padded), net.logits(batch))
    z = net.embed(padded.x_support)
    torch.testing.assert_close(net.prototypes(z, padded.y_support, 3, padded.support_mask),
                               net.prototypes(net.embed(batch.x_support), batch.y_support, 3))


def test_query_mask_ignores_padding(batch):
    net = ProtoNet(embedding())
    # task 0 keeps only its first 5 queries; the rest are padding with wrong labels
    mask = torch.ones(batch.x_query.shape[:2], dtype=torch.bool)
    mask[0, 5:] = False
    y_bad = batch.y_query.clone()
    y_bad[0, 5:] = (y_bad[0, 5:] + 1) % 3
    padded = TaskBatch(batch.x_support, batch.y_support, batch.x_query, y_bad, query_mask=mask)
    first = TaskBatch(batch.x_support[:1], batch.y_support[:1], batch.x_query[:1, :5], batch.y_query[:1, :5])
    rest = TaskBatch(batch.x_support[1:], batch.y_support[1:], batch.x_query[1:], batch.y_query[1:])
    expected = (net.loss(first) + 4 * net.loss(rest)) / 5
    torch.testing.assert_close(net.loss(padded), expected, rtol=1e-5, atol=1e-6)
    expected_acc = (net.accuracy(first) + 4 * net.accuracy(rest)) / 5
    torch.testing.assert_close(net.accuracy(padded), expected_acc)


def test_linear_classifier_function():
    mu = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])
    W, b = prototype_linear_classifier(mu)
    torch.testing.assert_close(W, 2 * mu)
    torch.testing.assert_close(b, torch.tensor([[-5.0, -1.0]]))
    with pytest.raises(ValueError, match="n_way, d"):
        prototype_linear_classifier(torch.zeros(3))


def test_fit_learns_and_is_deterministic():
    x, y = blobs(seed=2)
    train = lambda g: sample_episodes(x[y < 5], y[y < 5], 3, 1, 5, 4, generator=g)  # noqa: E731
    test = sample_episodes(x[y >= 5], y[y >= 5], 3, 1, 5, 50, generator=torch.Generator().manual_seed(9))
    runs = []
    for _ in range(2):
        net = ProtoNet(embedding(seed=3))
        hist = net.fit(train, 60, beta=1e-2, seed=7, progress=False, log_every=20)
        runs.append((hist, [p.detach().clone() for p in net.theta.values()], net.accuracy(test)))
    (h1, p1, a1), (h2, p2, a2) = runs
    assert h1 == h2 and set(h1) == {"iteration", "loss", "accuracy"}
    assert h1["iteration"] == [20, 40, 60]
    for a, b in zip(p1, p2):
        assert torch.equal(a, b)
    assert a1 == a2
    assert h1["loss"][-1] < h1["loss"][0]
    assert a1 > 0.8  # unseen classes, 3-way 1-shot, well-separated clusters


def test_fit_records_every_window_and_handles_a_ragged_last_window():
    x, y = blobs()
    net = ProtoNet(embedding())
    hist = net.fit(lambda g: sample_episodes(x, y, 3, 1, 2, 2, generator=g), 25, progress=False, log_every=10)
    assert hist["iteration"] == [10, 20, 25]
    assert all(0.0 <= a <= 1.0 for a in hist["accuracy"])


@pytest.mark.parametrize("distance", ["squared_euclidean", "euclidean", "cosine"])
def test_fit_runs_with_every_metric(distance):
    x, y = blobs()
    net = ProtoNet(embedding(), distance)
    hist = net.fit(lambda g: sample_episodes(x, y, 3, 2, 3, 2, generator=g), 5, progress=False, log_every=5)
    assert all(torch.isfinite(torch.tensor(hist["loss"])))


def test_bad_inputs(batch):
    with pytest.raises(ValueError, match="nn.Module"):
        ProtoNet(lambda x: x)
    with pytest.raises(ValueError, match="unknown distance"):
        ProtoNet(nn.Identity(), "hamming")
    with pytest.raises(ValueError, match="mahalanobis"):
        ProtoNet(nn.Identity(), "mahalanobis")
    net = ProtoNet(nn.Identity())
    float_labels = TaskBatch(batch.x_support, batch.y_support.float(), batch.x_query, batch.y_query)
    with pytest.raises(ValueError, match="integer class labels"):
        net.logits(float_labels)
    with pytest.raises(ValueError, match="n_way=2"):
        net.logits(batch, n_way=2)
    missing = TaskBatch(batch.x_support, batch.y_support.clamp(max=1), batch.x_query, batch.y_query)
    with pytest.raises(ValueError, match="class 2 has no support example"):
        net.loss(missing, n_way=3)
    with pytest.raises(ValueError, match="label 2 but n_way=2"):
        net.loss(TaskBatch(batch.x_support, batch.y_support.clamp(max=1), batch.x_query, batch.y_query))
    all_masked = torch.ones(batch.x_support.shape[:2], dtype=torch.bool)
    all_masked[0, batch.y_support[0] == 1] = False
    with pytest.raises(ValueError, match="class 1 has no support example in task 0"):
        net.logits(TaskBatch(batch.x_support, batch.y_support, batch.x_query, batch.y_query, support_mask=all_masked))
    with pytest.raises(ValueError, match="z_support contains NaN"):
        net.prototypes(torch.full((1, 2, 3), float("nan")), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="TaskBatch"):
        net.loss((batch.x_support, batch.y_support))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        ProtoNet(nn.Unflatten(1, (2, 3))).logits(batch)
    with pytest.raises(ValueError, match="iterations"):
        ProtoNet(embedding()).fit(lambda g: batch, 0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        net.fit(lambda g: batch, 1)


def test_custom_distance_callable(batch):
    from course_lib.distances import get_distance, shrunk_covariance

    cov = shrunk_covariance(batch.x_support.reshape(-1, 6))
    net = ProtoNet(nn.Identity(), get_distance("mahalanobis", cov=cov))
    logits = net.logits(batch)
    protos = class_prototypes(batch.x_support, batch.y_support, 3)
    torch.testing.assert_close(logits, -pairwise(batch.x_query, protos, "mahalanobis", cov=cov))


def test_accuracy_in_chunks_equals_one_pass(batch):
    net = ProtoNet(embedding())
    torch.testing.assert_close(net.accuracy(batch, per_task=True, chunk=2), net.accuracy(batch, per_task=True))
    torch.testing.assert_close(net.accuracy(batch, chunk=1), net.accuracy(batch))
    with pytest.raises(ValueError, match="chunk"):
        net.accuracy(batch, chunk=0)


def test_compile_flag_falls_back_or_matches_eager(monkeypatch):
    # Without paying for a real compilation: make torch.compile fail, fit must still train (eagerly).
    import warnings

    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    x, y = blobs()
    sample = lambda g: sample_episodes(x, y, 3, 1, 2, 2, generator=g)  # noqa: E731
    eager = ProtoNet(embedding(seed=4)).fit(sample, 6, progress=False, log_every=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = ProtoNet(embedding(seed=4)).fit(sample, 6, progress=False, log_every=3, compile=True)
    assert compiled == eager
    assert any("running eagerly" in str(w.message) for w in caught)
