"""Checks for chapter 03 (MAML from first principles).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or a function that returns ``None``),
and raises ``ExerciseError`` with a hint for a wrong answer. The reference answers come from
private references written here with ``torch.autograd`` (not the ``course_lib`` functions the
notebook imports), evaluated on a freshly drawn network and tasks at every call; an answer that
calls the implementation it is asked to write (``course_lib.algorithms``, or the notebook's own
``adapt`` / ``meta_gradient_by_hand``) is rejected by `course_lib.exercises.guard.forbid_calls`.
The library is tested against the same derivation elsewhere (tests/test_maml.py).

Conventions of the exercises (as in the chapter): a model is any ``nn.Module``, ``theta`` is a
dict of its parameters (name -> tensor), the task loss is the mean squared error, and a batch is a
``course_lib.tasks.TaskBatch`` with a leading task dimension.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import Tensor, nn

from course_lib import algorithms
from course_lib.algorithms import functional as _functional
from course_lib.exercises import as_number, as_tensor, fail, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

__all__ = ["check_inner_update", "check_meta_loss", "check_quadratic_meta_gradient",
           "check_fomaml_gradient", "quadratic_meta_gradient"]

# What each exercise asks the reader to write, so an answer may not call it.
_LIBRARY = {"course_lib.algorithms.inner_adapt": algorithms.inner_adapt,
            "course_lib.algorithms.maml_loss": algorithms.maml_loss,
            "course_lib.algorithms.MAML": algorithms.MAML,
            "MAML.adapt": algorithms.MAML.adapt, "MAML.meta_loss": algorithms.MAML.meta_loss,
            "course_lib.algorithms.functional": _functional}
_NOTEBOOK = {"adapt": "chapter 03's `adapt` from section 2",
             "meta_gradient_by_hand": "chapter 03's `meta_gradient_by_hand` from section 2"}


def _fresh_seed() -> int:
    """A new seed at every call: the check runs on inputs nobody has seen before."""
    return random.SystemRandom().randrange(1, 2**31)


def _MSE(prediction: Tensor, target: Tensor) -> Tensor:
    return (prediction - target) ** 2


def _ref_adapt(net: nn.Module, theta: dict[str, Tensor], x: Tensor, y: Tensor, alpha: float, steps: int = 1,
               first_order: bool = False) -> dict[str, Tensor]:
    """Reference inner loop with torch.autograd: φ after ``steps`` SGD steps of size α on (x, y).

    Differentiable in θ when θ requires grad (the inner gradient detached if ``first_order``).
    """
    graph = any(v.requires_grad for v in theta.values())
    phi = theta if graph else {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    for _ in range(steps):
        loss = _MSE(torch.func.functional_call(net, phi, (x,)), y).mean()
        grads = torch.autograd.grad(loss, list(phi.values()), create_graph=graph and not first_order)
        phi = {k: v - alpha * g for (k, v), g in zip(phi.items(), grads)}
    return phi if graph else {k: v.detach() for k, v in phi.items()}


def _ref_meta_loss(net: nn.Module, theta: dict[str, Tensor], batch: TaskBatch, alpha: float, steps: int = 1,
                   first_order: bool = False) -> Tensor:
    """Reference MAML objective: the mean over tasks of the query loss after ``steps`` inner steps."""
    losses = []
    for t in range(batch.n_tasks):
        phi = _ref_adapt(net, theta, batch.x_support[t], batch.y_support[t], alpha, steps, first_order)
        losses.append(_MSE(torch.func.functional_call(net, phi, (batch.x_query[t],)), batch.y_query[t]).mean())
    return torch.stack(losses).mean()


def _ref_meta_grad(net: nn.Module, theta: dict[str, Tensor], batch: TaskBatch, alpha: float, steps: int = 1,
                   first_order: bool = False) -> dict[str, Tensor]:
    """Reference meta-gradient (second order, or first order with the inner gradients detached)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    grads = torch.autograd.grad(_ref_meta_loss(net, leaves, batch, alpha, steps, first_order), list(leaves.values()))
    return dict(zip(leaves, grads))


def _net(seed: int = 0) -> nn.Module:
    """A small float64 regressor (smooth tanh units, so every second derivative is non-zero)."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def _batch(n_tasks: int = 4, k_shot: int = 5, n_query: int = 7, seed: int = 1) -> TaskBatch:
    b, _, _ = sample_sinusoid_tasks(n_tasks, k_shot, n_query, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)))


def _theta(net: nn.Module, requires_grad: bool = False) -> dict[str, Tensor]:
    return {k: v.detach().clone().requires_grad_(requires_grad) for k, v in net.named_parameters()}


def _call(fn: Callable, args: tuple, what: str):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is the reader's answer, reported as a hint
        fail(f"calling {what} raised {type(exc).__name__}: {exc}")


def _as_params(value, theta: dict[str, Tensor], what: str) -> dict[str, Tensor]:
    if not isinstance(value, dict):
        fail(f"{what} must be a dict name -> tensor like theta (keys {sorted(theta)}), got {type(value).__name__}")
    if set(value) != set(theta):
        fail(f"{what} must have exactly theta's keys {sorted(theta)}, got {sorted(value)}")
    for k, v in value.items():
        if not isinstance(v, Tensor) or v.shape != theta[k].shape:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            fail(f"{what}[{k!r}] must be a tensor shaped like theta[{k!r}] {tuple(theta[k].shape)}, got {shape}")
    return value


def _close(a: dict[str, Tensor], b: dict[str, Tensor], tol: float = 1e-8) -> bool:
    return all(torch.allclose(a[k].detach(), b[k].detach(), atol=tol, rtol=1e-6) for k in b)


def _scale(a: dict[str, Tensor], s: float) -> dict[str, Tensor]:
    return {k: s * v for k, v in a.items()}


def _query_grad(net: nn.Module, phi_of_theta: Callable[[dict], dict], x_q: Tensor, y_q: Tensor,
                theta: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """∇_θ L(φ(θ); query) with ordinary autograd; None if φ does not depend on θ at all."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    phi = phi_of_theta(leaves)
    loss = _MSE(torch.func.functional_call(net, phi, (x_q,)), y_q).mean()
    if not loss.requires_grad:
        return None
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(leaves, grads)}


# --------------------------------------------------------------------------------- exercise 1
def check_inner_update(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(model, theta, x, y, alpha) -> phi``, one inner step φ = θ − α∇_θ L(θ; x, y).

    ``x [k_shot, 1]``, ``y [k_shot, 1]`` are ONE task's support set (no task dimension); L is the
    mean squared error; φ must stay a differentiable function of θ (MAML differentiates through it).
    """
    if fn is None:
        return _todo("define my_inner_update(model, theta, x, y, alpha) and pass it to the check")
    forbid_calls(fn, _LIBRARY, "the inner step φ = θ − α∇L(θ)", forbidden_names=_NOTEBOOK)
    seed = _fresh_seed()
    net, batch = _net(seed), _batch(seed=seed + 1)
    theta = _theta(net)
    x, y, xq, yq = batch.x_support[0], batch.y_support[0], batch.x_query[0], batch.y_query[0]
    alpha = 0.1
    phi = _call(fn, (net, theta, x, y, alpha), "my_inner_update(model, theta, x, y, alpha=0.1)")
    if phi is None:
        return _todo("your function returns None; return the dict φ = {name: θ[name] − α·g[name]}")
    phi = _as_params(phi, theta, "φ")

    def ref(th: dict, a: float = alpha) -> dict:
        return _ref_adapt(net, th, x, y, a)

    expected = ref(theta)
    g = {k: (theta[k] - expected[k]) / alpha for k in theta}  # the support gradient ∇_θ L(θ)
    if _close(phi, g):
        fail("you returned the gradient g = ∇_θ L(θ); the update is φ = θ − α·g")
    if _close(phi, {k: theta[k] + alpha * g[k] for k in theta}):
        fail("φ = θ + α·g climbs the loss; a gradient step goes downhill: φ = θ − α·g")
    if _close(phi, {k: theta[k] - g[k] for k in theta}):
        fail("the step ignores alpha: φ = θ − α·g (here α = 0.1), not θ − g")
    if _close(phi, theta):
        fail("φ equals θ: the update did not change the parameters; subtract α times the gradient")
    if not _close(phi, expected):
        fail("φ differs from θ − α∇_θ L(θ; x, y); use the mean squared error over the K support points "
             "(e.g. ((functional_call(model, params, (x,)) - y) ** 2).mean()) and differentiate it with "
             "torch.func.grad with respect to the parameter dict")
    other = _call(fn, (net, theta, x, y, 0.03), "my_inner_update(..., alpha=0.03)")
    if other is None or not _close(_as_params(other, theta, "φ"), ref(theta, 0.03)):
        fail("with alpha=0.1 the answer is right but with alpha=0.03 it is not: use the alpha argument, "
             "do not hard-code a step size")
    # MAML differentiates through φ: the meta-gradient must contain the Hessian term.
    def answer(th: dict) -> dict:
        return _as_params(_call(fn, (net, th, x, y, alpha), "θ that requires grad"), theta, "φ")

    got = _query_grad(net, answer, xq, yq, theta)
    second = _query_grad(net, ref, xq, yq, theta)
    first = _query_grad(net, lambda th: {k: th[k] - (theta[k] - expected[k]) for k in th}, xq, yq, theta)
    if got is None:
        fail("the values of φ are right but φ does not depend on θ (no gradient flows back): do not call "
             ".detach(), .item() or torch.no_grad() inside the inner update")
    if not _close(got, second, 1e-7) and _close(got, first, 1e-7):
        fail("the values of φ are right, but the gradient through φ is the first-order one: the inner "
             "gradient was detached (or computed with torch.autograd.grad without create_graph=True). "
             "torch.func.grad keeps it differentiable")
    if not _close(got, second, 1e-7):
        fail("the values of φ are right but differentiating through them does not give MAML's meta-gradient; "
             "build φ from θ with differentiable operations only")
    return passed("φ = θ − α∇L(θ) matches the reference on a fresh random network and task, values and "
                  "meta-gradient alike")


# --------------------------------------------------------------------------------- exercise 2
def check_meta_loss(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(model, theta, batch, alpha) -> ℒ(θ)``, the MAML objective with one inner step.

    ℒ(θ) = (1/T) Σᵢ L(θ − α∇L(θ; 𝒟ᵢˢ); 𝒟ᵢ^q) for the T tasks of ``batch``, vectorised with vmap.
    """
    if fn is None:
        return _todo("define my_meta_loss(model, theta, batch, alpha) and pass it to the check")
    forbid_calls(fn, _LIBRARY, "the MAML objective", forbidden_names=_NOTEBOOK)
    seed = _fresh_seed()
    net, batch = _net(seed), _batch(n_tasks=5, seed=seed + 1)
    theta = _theta(net)
    alpha = 0.1
    got = _call(fn, (net, theta, batch, alpha), "my_meta_loss(model, theta, batch, alpha=0.1)")
    if got is None:
        return _todo("your function returns None; return the mean over tasks of the query loss after adaptation")
    if not isinstance(got, Tensor) or got.numel() != 1:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        fail(f"ℒ(θ) must be a scalar tensor (the mean over the tasks), got {shape}; call .mean() on the "
             "vmapped per-task losses")
    got = got.reshape(())
    expected = _ref_meta_loss(net, theta, batch, alpha)
    swapped = TaskBatch(batch.x_query, batch.y_query, batch.x_support, batch.y_support)
    if torch.allclose(got, expected * batch.n_tasks, rtol=1e-7):
        fail(f"your value is {batch.n_tasks}x too large: you summed over the {batch.n_tasks} tasks; take the mean")
    if torch.allclose(got, _ref_meta_loss(net, theta, batch, alpha, steps=0), rtol=1e-7):
        fail("that is the query loss at θ, before adaptation; evaluate it at φᵢ = θ − α∇L(θ; 𝒟ᵢˢ)")
    if torch.allclose(got, _ref_meta_loss(net, theta, swapped, alpha), rtol=1e-7):
        fail("support and query are swapped: adapt on (x_support, y_support), evaluate on (x_query, y_query)")
    if torch.allclose(got, _ref_meta_loss(net, theta, TaskBatch(batch.x_support, batch.y_support, batch.x_support,
                                                                 batch.y_support), alpha), rtol=1e-7):
        fail("you evaluated the adapted model on the support set; ℒ(θ) uses the held-out query set 𝒟ᵢ^q")
    if not torch.allclose(got, expected, rtol=1e-7, atol=1e-10):
        fail(f"ℒ(θ) = {float(got):.6f} but the reference gives {float(expected):.6f}; "
             "per task: φ = θ − α∇L(θ; support), then L(φ; query) with the mean squared error; then the "
             "mean over tasks")
    other = _call(fn, (net, theta, batch, 0.02), "my_meta_loss(..., alpha=0.02)")
    want_other = _ref_meta_loss(net, theta, batch, 0.02)
    if other is None or not torch.allclose(
            torch.tensor(as_number(other, "ℒ(θ) for alpha=0.02"), dtype=want_other.dtype), want_other, rtol=1e-7):
        fail("right for alpha=0.1 but not for alpha=0.02: use the alpha argument")
    leaves = _theta(net, requires_grad=True)
    value = _call(fn, (net, leaves, batch, alpha), "my_meta_loss(model, θ with requires_grad, batch, alpha=0.1)")
    if not isinstance(value, Tensor) or not value.requires_grad:
        fail("ℒ(θ) is right but not differentiable in θ: the outer loop needs ∇_θ ℒ(θ); avoid .detach() and .item()")
    grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    ref = torch.autograd.grad(_ref_meta_loss(net, leaves, batch, alpha), list(leaves.values()))
    if not all(g is not None and torch.allclose(g, r, atol=1e-8, rtol=1e-6) for g, r in zip(grads, ref)):
        fail("ℒ(θ) has the right value but the wrong gradient: the inner gradient was detached, so this is "
             "first-order MAML; keep the inner step differentiable (torch.func.grad)")
    return passed(f"ℒ(θ) = {float(got):.6f} and its gradient match the reference "
                  f"on {batch.n_tasks} tasks")


# --------------------------------------------------------------------------------- exercise 3
def quadratic_meta_gradient(theta: float, alpha: float, a_s: float, c_s: float, a_q: float, c_q: float,
                            first_order: bool = False) -> float:
    """d/dθ L_q(θ − α L_s'(θ)) for L_s(θ) = a_s(θ − c_s)²/2 and L_q(φ) = a_q(φ − c_q)²/2, by autograd.

    The reference the exercise's closed form is checked against (chapter 03, exercise 3).
    """
    t = torch.tensor(float(theta), dtype=torch.float64, requires_grad=True)
    inner = a_s * (t - c_s)
    phi = t - alpha * (inner.detach() if first_order else inner)
    loss = a_q * (phi - c_q) ** 2 / 2
    (g,) = torch.autograd.grad(loss, t)
    return float(g)


def check_quadratic_meta_gradient(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(theta, alpha, a_s, c_s, a_q, c_q) -> float``, the meta-gradient in closed form.

    Support loss L_s(θ) = a_s(θ − c_s)²/2, query loss L_q(φ) = a_q(φ − c_q)²/2, one inner step.
    """
    if fn is None:
        return _todo("define my_quadratic_meta_gradient(theta, alpha, a_s, c_s, a_q, c_q)")
    forbid_calls(fn, {"course_lib.exercises.ch03.quadratic_meta_gradient": quadratic_meta_gradient},
                 "the closed form")
    rng = random.Random(_fresh_seed())
    cases = [(round(rng.uniform(-2, 2), 3), round(rng.uniform(0.02, 0.3), 3), round(rng.uniform(0.3, 4), 3),
              round(rng.uniform(-2, 2), 3), round(rng.uniform(0.3, 4), 3), round(rng.uniform(-2, 2), 3))
             for _ in range(4)]
    for case in cases:
        got = _call(fn, case, f"my_quadratic_meta_gradient{case}")
        if got is None:
            return _todo("your function returns None; return the number dL_q(φ(θ))/dθ")
        got = as_number(got, "the meta-gradient")
        want = quadratic_meta_gradient(*case)
        if abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            continue
        theta, alpha, a_s, c_s, a_q, c_q = case
        phi = theta - alpha * a_s * (theta - c_s)
        if abs(got - quadratic_meta_gradient(*case, first_order=True)) < 1e-9:
            fail("that is a_q(φ − c_q) = L_q'(φ), the first-order (FOMAML) gradient: the chain rule through "
                 "φ = θ − α a_s(θ − c_s) multiplies it by dφ/dθ = 1 − α a_s")
        if abs(got - (1 + alpha * a_s) * a_q * (phi - c_q)) < 1e-9:
            fail("sign of the Hessian term: dφ/dθ = 1 − α·L_s''(θ) = 1 − α a_s, not 1 + α a_s")
        if abs(got - (1 - alpha * a_s) * a_q * (theta - c_q)) < 1e-9:
            fail("L_q' is evaluated at θ; it must be evaluated at the adapted φ = θ − α a_s(θ − c_s)")
        fail(f"for (θ, α, a_s, c_s, a_q, c_q) = {case} the meta-gradient is {want:.6f}, you returned {got:.6f}; "
             "write φ = θ − α a_s(θ − c_s), then dL_q/dθ = L_q'(φ) · dφ/dθ")
    return passed("your closed form equals autograd's meta-gradient on four random quadratic tasks: "
                  "(1 − α a_s) · a_q(φ − c_q)")


# --------------------------------------------------------------------------------- exercise 4
def check_fomaml_gradient(fn: Callable | None) -> bool:
    """Exercise 4: ``fn(model, theta, batch, alpha) -> grads``, the first-order MAML meta-gradient.

    grads is a dict name -> tensor: (1/T) Σᵢ ∇_φ L(φᵢ; 𝒟ᵢ^q) with φᵢ = θ − α∇L(θ; 𝒟ᵢˢ), one inner step.
    """
    if fn is None:
        return _todo("define my_fomaml_gradient(model, theta, batch, alpha) and pass it to the check")
    forbid_calls(fn, _LIBRARY, "the first-order meta-gradient", forbidden_names=_NOTEBOOK)
    seed = _fresh_seed()
    net, batch = _net(seed), _batch(n_tasks=4, seed=seed + 1)
    theta = _theta(net)
    alpha = 0.1
    got = _call(fn, (net, theta, batch, alpha), "my_fomaml_gradient(model, theta, batch, alpha=0.1)")
    if got is None:
        return _todo("your function returns None; return a dict of gradients shaped like theta")
    got = {k: v.detach() for k, v in _as_params(got, theta, "the gradient").items()}

    def meta_grad(first_order: bool, steps: int = 1) -> dict[str, Tensor]:
        return _ref_meta_grad(net, theta, batch, alpha, steps, first_order)

    expected = meta_grad(True)
    if _close(got, _scale(expected, batch.n_tasks)):
        fail(f"your gradient is {batch.n_tasks}x too large: average over the tasks instead of summing")
    if _close(got, meta_grad(False)):
        fail("that is the full second-order MAML gradient; first-order MAML treats the inner gradient as a "
             "constant: ∇_φ L(φᵢ; query) evaluated at φᵢ, with no (I − α∇²L) factor")
    if _close(got, meta_grad(True, steps=0)):
        fail("that is the query gradient at θ (no adaptation); evaluate ∇L(·; query) at φᵢ = θ − α∇L(θ; support)")
    if not _close(got, expected):
        fail("your gradient differs from the first-order reference; per task: φᵢ = θ − α∇L(θ; support), "
             "then gᵢ = ∇_φ L(φᵢ; query); return the mean of gᵢ over tasks")
    return passed("your first-order meta-gradient equals the reference on a fresh random network and tasks")


# --------------------------------------------------------------------------------- exercise 5
__all__ += ["check_prototype_head_step"]


def _ref_head_step(z: Tensor, y: Tensor, n_way: int, alpha: float, init_scale: float = 2.0,
                   reduce: str = "mean") -> tuple[Tensor, Tensor]:
    """Reference: prototype head (W = 2c, b = −‖c‖²), then one autograd step on the support cross-entropy."""
    c = torch.stack([z[y == k].mean(0) for k in range(n_way)])
    W = (init_scale * c).requires_grad_(True)
    b = (-(c * c).sum(1)).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(z @ W.T + b, y, reduction=reduce)
    gW, gb = torch.autograd.grad(loss, [W, b])
    return (W - alpha * gW).detach(), (b - alpha * gb).detach()


def check_prototype_head_step(fn: Callable | None) -> bool:
    """Exercise 5: ``fn(z_support, y_support, n_way, alpha) -> (W, b)``: ProtoMAML's head after one step.

    Start from the prototype head W_k = 2c_k, b_k = −‖c_k‖² (c_k = mean of the class-k rows of
    ``z_support [n, d]``), take one gradient step of size α on the mean support cross-entropy of the
    logits z Wᵀ + b with respect to W and b (the embedding z stays fixed), return ``W [n_way, d]`` and
    ``b [n_way]``. Checked on fresh random embeddings against an autograd reference; answers that
    call course_lib's ProtoMAML / ProtoNet code or an autograd routine are refused (write the
    gradient (P − Y)ᵀZ / n from the formula).
    """
    if fn is None:
        return _todo("define my_prototype_head_step(z_support, y_support, n_way, alpha) and pass it to the check")
    from course_lib.algorithms import protomaml, protonet

    forbidden = {"course_lib.algorithms.protomaml": protomaml, "ProtoMAML": protomaml.ProtoMAML,
                 "prototype_head": protomaml.prototype_head, "protomaml_adapt": protomaml.protomaml_adapt,
                 "course_lib.algorithms.protonet": protonet, "ProtoNet": protonet.ProtoNet,
                 "prototype_linear_classifier": protonet.prototype_linear_classifier,
                 "class_prototypes": protonet.class_prototypes, "torch.autograd.grad": torch.autograd.grad,
                 "torch.func.grad": torch.func.grad, "torch.autograd": torch.autograd, **_LIBRARY}
    forbid_calls(fn, forbidden, "the head's gradient step")
    seed = _fresh_seed()
    g = torch.Generator().manual_seed(seed)
    n_way, k, d, alpha = 3, 4, 5, 0.3
    z = torch.randn(n_way * k, d, generator=g, dtype=torch.float64)
    y = torch.arange(n_way).repeat_interleave(k)[torch.randperm(n_way * k, generator=g)]
    got = _call(fn, (z.clone(), y.clone(), n_way, alpha), "my_prototype_head_step(z_support, y_support, 3, 0.3)")
    if got is None:
        return _todo("your function returns None; return the pair (W, b)")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"return a pair (W, b), got {type(got).__name__}")
    W, b = as_tensor(got[0], "W"), as_tensor(got[1], "b")
    if W.shape != (n_way, d) or b.shape != (n_way,):
        fail(f"W must be [n_way, d] = ({n_way}, {d}) and b [n_way] = ({n_way},); got {tuple(W.shape)} and {tuple(b.shape)}")
    close = lambda ref: torch.allclose(W, ref[0], atol=1e-8) and torch.allclose(b, ref[1], atol=1e-8)  # noqa: E731
    if close(_ref_head_step(z, y, n_way, 0.0)):
        fail("that is the prototype head before the step; now subtract α times the gradient of the support "
             "cross-entropy")
    if close(_ref_head_step(z, y, n_way, -alpha)):
        fail("your step goes uphill: W ← W − α ∂L/∂W, with ∂L/∂W = (P − Y)ᵀZ / n (P the softmax, Y one-hot)")
    if close(_ref_head_step(z, y, n_way, alpha, reduce="sum")):
        fail(f"your step is {n_way * k}x too large: the loss is the *mean* cross-entropy over the support examples")
    if close(_ref_head_step(z, y, n_way, alpha, init_scale=1.0)):
        fail("the starting head is wrong: −‖z − c‖² = −‖z‖² + 2cᵀz − ‖c‖² gives W = 2c, not c")
    if not close(_ref_head_step(z, y, n_way, alpha)):
        fail("your head differs from the reference; start at W = 2c, b = −‖c‖², compute P = softmax(ZWᵀ + b), "
             "then W − α(P − Y)ᵀZ/n and b − α·mean over rows of (P − Y)")
    return passed("your prototype head after one step equals the reference on fresh random embeddings")
