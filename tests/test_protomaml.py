"""ProtoMAML (course_lib.algorithms.protomaml): the prototype head is the ProtoNet, 0 steps is the ProtoNet,
and the vmapped meta-gradient equals a slow per-task autograd reference in every gradient mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from course_lib.algorithms.protomaml import PrototypeHeadNet, ProtoMAML, prototype_head, protomaml_loss
from course_lib.algorithms.protonet import ProtoNet, prototype_linear_classifier
from course_lib.tasks import TaskBatch, sample_episodes


def embedding(dtype=torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4)).to(dtype)


def episodes(n_tasks: int = 4, n_way: int = 3, k: int = 2, q: int = 3, dtype=torch.float32, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 5, generator=g, dtype=dtype) + torch.arange(120)[:, None].remainder(6).to(dtype)
    y = torch.arange(120) % 6
    return sample_episodes(x, y, n_way, k, q, n_tasks, generator=g)


def test_prototype_head_gives_the_protonet_logits_up_to_the_shared_norm_term():
    net, batch = embedding(torch.float64), episodes(dtype=torch.float64)
    model = PrototypeHeadNet(net)
    theta = dict(model.named_parameters())
    for i in range(batch.n_tasks):
        head = prototype_head(model, theta, batch.x_support[i], batch.y_support[i], None, 3)
        logits = functional_call(model, {**theta, **head}, (batch.x_query[i],))
        z, zs = net(batch.x_query[i]), net(batch.x_support[i])
        c = torch.stack([zs[batch.y_support[i] == k].mean(0) for k in range(3)])
        assert torch.allclose(logits, -torch.cdist(z, c).pow(2) + z.pow(2).sum(-1, keepdim=True), atol=1e-10)
        W, b = prototype_linear_classifier(c)  # chapter 02's linear form
        assert torch.allclose(head["head_weight"], W) and torch.allclose(head["head_bias"], b)


def test_zero_inner_steps_is_the_protonet_loss_logits_and_gradient():
    batch = episodes(dtype=torch.float64)
    net = embedding(torch.float64)
    proto, protonet = ProtoMAML(net, alpha=0.5, steps=0), ProtoNet(net)
    ours, theirs = proto.logits(batch), protonet.logits(batch).detach()
    diff = ours - theirs  # differ by −‖z‖², the same for every class
    assert torch.allclose(diff, diff[..., :1].expand_as(diff), atol=1e-10)
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    g1 = torch.autograd.grad(proto.meta_loss(batch), list(net.parameters()))
    g2 = torch.autograd.grad(protonet.loss(batch), list(net.parameters()))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-10)


def reference_loss(net: nn.Module, batch: TaskBatch, n_way: int, alpha: float, steps: int, first_order: bool,
                   through_init: bool) -> torch.Tensor:
    """ProtoMAML written the slow way: a Python loop over tasks, torch.autograd.grad, explicit prototypes."""
    theta = dict(net.named_parameters())
    total = 0.0
    for i in range(batch.n_tasks):
        xs, ys, xq, yq = batch.x_support[i], batch.y_support[i], batch.x_query[i], batch.y_query[i]
        zs = functional_call(net, theta, (xs,))
        c = torch.stack([zs[ys == k].mean(0) for k in range(n_way)])
        W, b = 2 * c, -(c * c).sum(1)
        if not through_init:
            W, b = W.detach().requires_grad_(), b.detach().requires_grad_()
        phi = {**theta, "W": W, "b": b}
        for _ in range(steps):
            # fresh nodes, so that each gradient is the partial derivative (W and b depend on θ too)
            phi = {n: v.clone() for n, v in phi.items()}
            emb = {n: v for n, v in phi.items() if n not in ("W", "b")}
            loss = F.cross_entropy(functional_call(net, emb, (xs,)) @ phi["W"].T + phi["b"], ys)
            grads = torch.autograd.grad(loss, list(phi.values()), create_graph=not first_order)
            phi = {n: v - alpha * (g.detach() if first_order else g) for (n, v), g in zip(phi.items(), grads)}
        emb = {n: v for n, v in phi.items() if n not in ("W", "b")}
        total = total + F.cross_entropy(functional_call(net, emb, (xq,)) @ phi["W"].T + phi["b"], yq)
    return total / batch.n_tasks


@pytest.mark.parametrize("first_order,through_init", [(False, True), (True, True), (False, False), (True, False)])
def test_meta_gradient_matches_the_slow_reference(first_order, through_init):
    batch = episodes(dtype=torch.float64)
    net = embedding(torch.float64)
    model = PrototypeHeadNet(net)
    loss = protomaml_loss(model, dict(model.named_parameters()), batch, n_way=3, alpha=0.3, steps=3,
                          first_order=first_order, through_init=through_init)
    ref = reference_loss(net, batch, 3, 0.3, 3, first_order, through_init)
    assert torch.allclose(loss, ref, atol=1e-10)
    ours = torch.autograd.grad(loss, list(net.parameters()))
    theirs = torch.autograd.grad(ref, list(net.parameters()))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()


def test_gradient_modes_differ_and_second_order_matches_finite_differences():
    batch = episodes(dtype=torch.float64)
    net = embedding(torch.float64)
    model = PrototypeHeadNet(net)
    grads = {}
    for mode in [(False, True), (True, True), (False, False)]:
        loss = protomaml_loss(model, dict(model.named_parameters()), batch, n_way=3, alpha=0.3, steps=2,
                              first_order=mode[0], through_init=mode[1])
        grads[mode] = torch.autograd.grad(loss, list(net.parameters()))
    flat = {m: torch.cat([g.flatten() for g in gs]) for m, gs in grads.items()}
    assert not torch.allclose(flat[(False, True)], flat[(True, True)])   # the Hessian terms matter
    assert not torch.allclose(flat[(False, True)], flat[(False, False)])  # the path through the prototypes matters
    # central finite difference of the full objective along a random direction
    direction = [torch.randn_like(p) for p in net.parameters()]

    def objective(eps: float) -> float:
        theta = {n: p.detach() + eps * d for (n, p), d in zip(net.named_parameters(), direction)}
        return float(protomaml_loss(model, {f"embedding.{n}": v for n, v in theta.items()}, batch, n_way=3,
                                    alpha=0.3, steps=2))

    fd = (objective(1e-5) - objective(-1e-5)) / 2e-5
    analytic = sum((g * d).sum() for g, d in zip(grads[(False, True)], direction))
    assert abs(fd - float(analytic)) < 1e-6 * max(1.0, abs(fd))


def test_inner_steps_change_the_head_and_adapt_prefixes_freeze_the_embedding():
    batch = episodes()
    learner = ProtoMAML(embedding(), alpha=0.5, steps=3, adapt=["head_"])
    phi = learner.adapt_batch(batch)
    for name, p in learner.theta.items():
        assert torch.equal(phi[name], p.detach().expand_as(phi[name]))  # the embedding did not move
    head0 = ProtoMAML(learner.embedding, alpha=0.5, steps=0).adapt_batch(batch)
    assert not torch.allclose(phi["head_weight"], head0["head_weight"])
    assert phi["head_weight"].shape == (batch.n_tasks, 3, 4)


def test_adaptation_lowers_the_support_loss_and_fit_lowers_the_query_loss():
    batch = episodes(n_tasks=8, seed=1)
    learner = ProtoMAML(embedding(), alpha=0.2, steps=5)
    logits_0 = ProtoMAML(learner.embedding, steps=0).logits(TaskBatch(batch.x_support, batch.y_support,
                                                                      batch.x_support, batch.y_support))
    logits_5 = learner.logits(TaskBatch(batch.x_support, batch.y_support, batch.x_support, batch.y_support))
    ce = lambda lg: F.cross_entropy(lg.flatten(0, 1), batch.y_support.flatten())  # noqa: E731
    assert ce(logits_5) < ce(logits_0)
    before = learner.meta_loss(batch).item()
    sample = lambda g: episodes(n_tasks=8, seed=int(torch.randint(1000, (1,), generator=g)))  # noqa: E731
    history = learner.fit(sample, 40, beta=1e-2, progress=False, log_every=10)
    assert len(history["loss"]) == 4
    assert learner.meta_loss(batch).item() < before


def test_bad_input_is_refused_with_a_message():
    batch = episodes()
    learner = ProtoMAML(embedding())
    missing = TaskBatch(batch.x_support, torch.zeros_like(batch.y_support), batch.x_query, torch.zeros_like(batch.y_query))
    with pytest.raises(ValueError, match="no support example"):
        learner.meta_loss(missing, n_way=3)
    with pytest.raises(ValueError, match="integer class labels"):
        learner.meta_loss(TaskBatch(batch.x_support, batch.y_support.float(), batch.x_query, batch.y_query))
    inf = batch.x_support.clone()
    inf[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        learner.meta_loss(TaskBatch(inf, batch.y_support, batch.x_query, batch.y_query))
    with pytest.raises(ValueError, match="NaN"):
        TaskBatch(batch.x_support * float("nan"), batch.y_support, batch.x_query, batch.y_query)
    with pytest.raises(ValueError, match="alpha"):
        ProtoMAML(embedding(), alpha=0.0)
    with pytest.raises(ValueError, match="steps"):
        ProtoMAML(embedding(), steps=-1)
    with pytest.raises(ValueError, match="head is not set"):
        PrototypeHeadNet(embedding())(batch.x_query[0])


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_agrees_with_learn2learn_maml_on_a_prototype_initialised_head(first_order):
    """learn2learn has no ProtoMAML, but its MAML on "embedding + linear head" is one once the clone's head is
    set to the prototype head (computed from the *original* θ, so the inner gradients stay partial ones)."""
    l2l = pytest.importorskip("learn2learn")
    batch = episodes(dtype=torch.float64)
    net = embedding(torch.float64)
    model = PrototypeHeadNet(net)
    loss = protomaml_loss(model, dict(model.named_parameters()), batch, n_way=3, alpha=0.3, steps=2,
                          first_order=first_order)
    ours = torch.autograd.grad(loss, list(net.parameters()))

    whole = nn.Sequential(net, nn.Linear(4, 3)).double()
    maml = l2l.algorithms.MAML(whole, lr=0.3, first_order=first_order)
    total = 0.0
    for i in range(batch.n_tasks):
        xs, ys, xq, yq = batch.x_support[i], batch.y_support[i], batch.x_query[i], batch.y_query[i]
        zs = net(xs)
        c = torch.stack([zs[ys == k].mean(0) for k in range(3)])
        learner = maml.clone()
        learner.module[1]._parameters["weight"] = 2 * c
        learner.module[1]._parameters["bias"] = -(c * c).sum(1)
        for _ in range(2):
            learner.adapt(F.cross_entropy(learner(xs), ys))
        total = total + F.cross_entropy(learner(xq), yq)
    theirs = torch.autograd.grad(total / batch.n_tasks, list(net.parameters()))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()
