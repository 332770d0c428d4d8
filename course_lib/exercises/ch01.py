"""Checks for chapter 01 (Personalization as few-shot learning).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None``, and raises ``ExerciseError`` with a
hint for a wrong answer. Exercises 3 and 4 are checked on a freshly drawn model and tasks at every
call against private references written here with ``torch.autograd``; an answer that calls the
implementation it is asked to write (``course_lib``'s inner loop, MAML loss or fine-tuning) is
rejected by `course_lib.exercises.guard.forbid_calls`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import algorithms
from course_lib.algorithms import functional as _functional
from course_lib.baselines import fine_tuning as _fine_tuning
from course_lib.exercises import call as _call, fail, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

#: What exercises 3 and 4 ask the reader to write, so an answer may not call it.
_LIBRARY = {"course_lib.algorithms.inner_adapt": algorithms.inner_adapt,
            "course_lib.algorithms.maml_loss": algorithms.maml_loss,
            "course_lib.algorithms.MAML": algorithms.MAML,
            "course_lib.algorithms.functional.task_loss": _functional.task_loss,
            "course_lib.baselines.fine_tuning": _fine_tuning}

__all__ = ["check_split_by_learner", "check_support_query", "check_maml_objective", "check_fine_tune"]


def _ids(value, name: str) -> list[int]:
    try:
        out = torch.as_tensor(value).reshape(-1)
    except Exception as exc:  # noqa: BLE001
        fail(f"{name} could not be turned into a 1-D list of learner ids ({exc}); return a LongTensor or list")
    if out.is_floating_point() and not torch.equal(out, out.round()):
        fail(f"{name} holds non-integer values; return learner ids (row numbers), not fractions or masks")
    return [int(v) for v in out.tolist()]


# ------------------------------------------------------------------------------------ exercise 1

def check_split_by_learner(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(n_learners, fractions, seed) -> {"train", "validation", "test"}`` learner ids.

    Right: the three sets partition range(n_learners), have the requested sizes (±1), are chosen
    at random (a different seed gives a different split) and reproducibly (same seed, same split).
    """
    if fn is None:
        return _todo("define split_by_learner(n_learners, fractions, seed) and pass it to the check")
    n, fractions = 103, (0.6, 0.2, 0.2)
    out = _call(fn, "n_learners=103, fractions=(0.6, 0.2, 0.2), seed=0", n, fractions, 0)
    if out is None:
        return _todo("your function returns None; return a dict with keys 'train', 'validation', 'test'")
    if not isinstance(out, dict) or set(out) != {"train", "validation", "test"}:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        fail(f"return a dict with exactly the keys 'train', 'validation', 'test'; got {got}")
    sets = {k: _ids(v, f"split[{k!r}]") for k, v in out.items()}
    for name, ids in sets.items():
        if len(ids) != len(set(ids)):
            fail(f"split[{name!r}] lists a learner twice; draw learners without replacement (a permutation)")
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            fail(f"split[{name!r}] contains {bad[:3]}, which are not learner ids 0..{n - 1}")
    for a, b in (("train", "test"), ("train", "validation"), ("validation", "test")):
        both = set(sets[a]) & set(sets[b])
        if both:
            fail(f"learner(s) {sorted(both)[:5]} are in both {a} and {b}: that is leakage. Every learner must "
                 "be in exactly one split, so that test learners are really new")
    missing = set(range(n)) - set().union(*map(set, sets.values()))
    if missing:
        fail(f"{len(missing)} learners (e.g. {sorted(missing)[:5]}) are in no split; all learners must be used")
    for name, frac in zip(("train", "validation", "test"), fractions):
        if abs(len(sets[name]) - frac * n) > 1.01:
            fail(f"split[{name!r}] has {len(sets[name])} learners; with fractions {fractions} and {n} learners "
                 f"it should have about {frac * n:.1f}")
    again = {k: _ids(v, k) for k, v in _call(fn, "the same seed again", n, fractions, 0).items()}
    if any(sorted(again[k]) != sorted(sets[k]) for k in sets):
        fail("calling it twice with seed=0 gave two different splits; draw the permutation from "
             "torch.Generator().manual_seed(seed) so results are reproducible")
    other = {k: _ids(v, k) for k, v in _call(fn, "seed=1", n, fractions, 1).items()}
    if all(sorted(other[k]) == sorted(sets[k]) for k in sets):
        fail("seed=0 and seed=1 give the same split: it is not random. Learner ids often follow enrolment "
             "order or school, so a split by position is biased; shuffle with the seeded generator")
    return passed(f"train/validation/test = {len(sets['train'])}/{len(sets['validation'])}/{len(sets['test'])} "
                  "disjoint learners covering everyone, random and reproducible")


# ------------------------------------------------------------------------------------ exercise 2

def _answer_rows() -> Tensor:
    g = torch.Generator().manual_seed(11)
    rows = (torch.rand(4, 12, generator=g) < 0.6).float()
    rows[0, [1, 4, 5]] = float("nan")
    rows[1, [0, 11]] = float("nan")
    rows[3, 2:9] = float("nan")
    return rows


def check_support_query(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(answers [items] with NaN = missing, k_shot, generator) -> (support, query)``.

    ``support`` and ``query`` are item indices. Right: K support items, support and query
    disjoint, both only answered items, together all answered items, random (driven by the
    generator), and a ValueError when fewer than K + 1 items were answered.
    """
    if fn is None:
        return _todo("define support_query(answers, k_shot, generator) and pass it to the check")
    rows = _answer_rows()
    seen_supports = []
    for r, row in enumerate(rows):
        answered = set(torch.nonzero(~torch.isnan(row)).flatten().tolist())
        k = 3
        out = _call(fn, f"learner {r} (answers {row.tolist()}), k_shot=3", row.clone(), k,
                    torch.Generator().manual_seed(r))
        if out is None:
            return _todo("your function returns None; return (support_items, query_items)")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            fail("return a pair (support_items, query_items) of item indices")
        support, query = (_ids(v, name) for v, name in zip(out, ("support", "query")))
        if set(support) & set(query):
            fail(f"items {sorted(set(support) & set(query))} are in both the support and the query set; a model "
                 "adapted on an answer must not be scored on the same answer")
        if len(support) != k:
            fail(f"the support set must hold exactly K = {k} items, got {len(support)}")
        used_missing = (set(support) | set(query)) - answered
        if used_missing:
            fail(f"items {sorted(used_missing)} were not answered (NaN) but appear in your sets; missing is not "
                 "'wrong': skip unanswered items entirely")
        if set(support) | set(query) != answered:
            fail(f"answered items {sorted(answered - set(support) - set(query))} are in neither set; the query set "
                 "is every answered item not in the support set")
        seen_supports.append(tuple(sorted(support)))
    again = []
    for r, row in enumerate(rows):
        out = _call(fn, f"learner {r} with another seed", row.clone(), 3, torch.Generator().manual_seed(100 + r))
        again.append(tuple(sorted(_ids(out[0], "support"))))
    if again == seen_supports:
        fail("different generator seeds give the same support sets: choose the K items at random with the "
             "generator (e.g. torch.randperm(n, generator=generator))")
    short = torch.tensor([1.0, float("nan"), 0.0, float("nan")])
    try:
        fn(short, 2, torch.Generator().manual_seed(0))
    except ValueError:
        pass
    except Exception as exc:  # noqa: BLE001
        fail(f"with 2 answered items and K = 2 raise a ValueError that says K is too large; got "
             f"{type(exc).__name__}: {exc}")
    else:
        fail("a learner with 2 answered items cannot give K = 2 support items AND a query item; raise a "
             "ValueError that says to lower K")
    return passed("K random answered items form the support set, every other answered item the query set, "
                  "missing answers are never used, and too-short learners are refused")


# ------------------------------------------------------------------------------------ exercise 3

class _TinyModel(nn.Module):
    """The chapter's model in miniature: logit = w · [x_j, e_j] + c_j for item indices j."""

    def __init__(self, n_items: int = 10, n_features: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("features", torch.randn(n_items, n_features, generator=g, dtype=torch.float64))
        self.head = nn.Linear(n_features + 1, 1, bias=False).double()
        self.embed = nn.Embedding(n_items, 1).double()
        self.offset = nn.Embedding(n_items, 1).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7)

    def forward(self, items: Tensor) -> Tensor:
        inputs = torch.cat([self.features[items], self.embed(items)], -1)
        return self.head(inputs).squeeze(-1) + self.offset(items).squeeze(-1)


def _fresh_seed() -> int:
    """A new seed at every call: the check runs on inputs nobody has seen before."""
    return random.SystemRandom().randrange(1, 2**31)


def _bce(model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Reference loss: mean binary cross-entropy on the logits of ``model`` with ``params``."""
    return F.binary_cross_entropy_with_logits(torch.func.functional_call(model, params, (x,)), y)


def _ref_adapt(model: nn.Module, theta: dict[str, Tensor], x: Tensor, y: Tensor, alpha: float, steps: int = 1,
               only: tuple[str, ...] | None = None) -> dict[str, Tensor]:
    """Reference inner loop with torch.autograd: ``steps`` SGD steps on the mean BCE, differentiable in θ.

    ``only``: the parameter names that adapt (all when None).
    """
    graph = any(v.requires_grad for v in theta.values())
    phi = dict(theta) if graph else {k: v.detach().clone() for k, v in theta.items()}
    names = [k for k in phi if only is None or k in only]
    for _ in range(steps):
        if not graph:
            phi = {k: (v.detach().requires_grad_(True) if k in names else v) for k, v in phi.items()}
        grads = torch.autograd.grad(_bce(model, phi, x, y), [phi[k] for k in names], create_graph=graph)
        phi = {**phi, **{k: phi[k] - alpha * g for k, g in zip(names, grads)}}
    return phi if graph else {k: v.detach() for k, v in phi.items()}


def _tiny_tasks(seed: int = 0) -> tuple[_TinyModel, dict[str, Tensor], list[tuple[Tensor, ...]]]:
    model = _TinyModel(seed=seed)
    theta = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(seed + 1)
    tasks = []
    for _ in range(3):
        perm = torch.randperm(10, generator=g)
        y = (torch.rand(10, generator=g) < 0.5).double()
        tasks.append((perm[:4], y[perm[:4]], perm[4:], y[perm[4:]]))
    return model, theta, tasks


def check_maml_objective(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(model, theta, x_s, y_s, x_q, y_q, alpha)`` -> one task's MAML loss (a scalar tensor).

    The loss is binary cross-entropy on logits; one inner gradient step of size α on the support
    set, every parameter adapted, second order (the meta-gradient flows through the inner step).
    Checked against a private reference on a fresh random model, value and gradient with respect to θ.
    """
    if fn is None:
        return _todo("define maml_task_loss(model, theta, x_s, y_s, x_q, y_q, alpha)")
    forbid_calls(fn, _LIBRARY, "the inner step and the query loss with torch.autograd")
    model, theta, tasks = _tiny_tasks(_fresh_seed())
    alpha = 0.4
    for t, (xs, ys, xq, yq) in enumerate(tasks):
        got = _call(fn, f"task {t} (4 support, 6 query answers)", model, theta, xs, ys, xq, yq, alpha)
        if got is None:
            return _todo("your function returns None; return the query loss after one inner step")
        if not isinstance(got, Tensor) or got.numel() != 1:
            fail("return a scalar torch.Tensor (not a float), so that the meta-gradient can flow through it")
        expected = _bce(model, _ref_adapt(model, theta, xs, ys, alpha), xq, yq)
        if torch.allclose(got.detach(), expected.detach(), atol=1e-9):
            continue
        candidates = {
            "no_adapt_query": _bce(model, theta, xq, yq),
            "no_adapt_all": _bce(model, theta, torch.cat([xs, xq]), torch.cat([ys, yq])),
            "adapt_on_query": _bce(model, _ref_adapt(model, theta, xq, yq, alpha), xq, yq),
            "score_support": _bce(model, _ref_adapt(model, theta, xs, ys, alpha), xs, ys),
            "ascent": _bce(model, _ref_adapt(model, theta, xs, ys, -alpha), xq, yq),
        }
        close = {k for k, v in candidates.items() if torch.allclose(got.detach(), v.detach(), atol=1e-9)}
        if close & {"no_adapt_query", "no_adapt_all"}:
            fail("this is the loss at θ itself, with no adaptation: the pretraining objective. The MAML loss "
                 "first computes φ = θ − α∇L(θ; support) and then scores φ on the query set")
        if "adapt_on_query" in close:
            fail("you adapted on the query set and scored on it too: that is leakage. Adapt on the support set "
                 "(x_s, y_s), score on the query set (x_q, y_q)")
        if "score_support" in close:
            fail("you scored φ on the support set it was adapted on; the MAML loss scores φ on the query set")
        if "ascent" in close:
            fail("the inner step went uphill: φ = θ − α ∇L (minus), not θ + α ∇L")
        fail(f"task {t}: got {float(got.detach()):.6f}, the reference gives {float(expected.detach()):.6f}; "
             "support loss = mean BCE-with-logits of functional_call(model, theta, (x_s,)) against y_s; "
             "φ = θ − α · its gradient (torch.autograd.grad with create_graph=True); then the same loss of φ "
             "on the query set")
    xs, ys, xq, yq = tasks[0]
    got = _call(fn, "task 0 again, to differentiate it", model, theta, xs, ys, xq, yq, alpha)
    expected = _bce(model, _ref_adapt(model, theta, xs, ys, alpha), xq, yq)
    if not isinstance(got, Tensor) or not got.requires_grad:
        fail("the value is right but carries no gradient: keep θ in the graph (no .detach(), no torch.no_grad) "
             "so that the outer loop can differentiate it")
    g_got = torch.autograd.grad(got, list(theta.values()), allow_unused=True)
    g_exp = torch.autograd.grad(expected, list(theta.values()))
    for name, a, b in zip(theta, g_got, g_exp):
        if a is None or not torch.allclose(a, b, atol=1e-8):
            fail(f"the value is right but the meta-gradient for {name!r} differs from second-order MAML's: do not "
                 "detach the inner gradient (that is first-order MAML, chapter 03)")
    return passed("your MAML loss matches the reference in value and meta-gradient on a fresh random model")


# ------------------------------------------------------------------------------------ exercise 4

def _reference_fine_tune(model: nn.Module, theta: dict[str, Tensor], xs: Tensor, ys: Tensor, alpha: float,
                         steps: int, adapt: list[str] | None = ("head.",)) -> dict[str, Tensor]:
    theta = {k: v.detach() for k, v in theta.items()}
    only = None if adapt is None else tuple(k for k in theta if any(k.startswith(a) for a in adapt))
    return _ref_adapt(model, theta, xs, ys, alpha, steps, only)


def check_fine_tune(fn: Callable | None) -> bool:
    """Exercise 4: ``fn(model, theta_pre, x_s, y_s, alpha, steps) -> phi``: fine-tuning the head only.

    ``steps`` plain gradient steps of size α on the *mean* binary cross-entropy of the support set,
    changing only ``head.weight``; θ_pre must not be modified. Checked against a private reference
    of the inner loop that ``course_lib.baselines.fine_tuning.adapt_path`` and MAML use, on a fresh
    random model.
    """
    if fn is None:
        return _todo("define fine_tune(model, theta_pre, x_s, y_s, alpha, steps)")
    forbid_calls(fn, _LIBRARY, "the fine-tuning loop")
    model, _, tasks = _tiny_tasks(seed=_fresh_seed())
    theta_pre = {k: v.detach().clone() for k, v in model.named_parameters()}
    before = {k: v.clone() for k, v in theta_pre.items()}
    xs, ys, _, _ = tasks[0]
    alpha, steps = 0.5, 3
    phi = _call(fn, "a support set of 4 answers with alpha=0.5, steps=3", model, theta_pre, xs, ys, alpha, steps)
    if phi is None:
        return _todo("your function returns None; return the adapted parameter dict φ")
    if any(not torch.equal(theta_pre[k], before[k]) for k in before):
        fail("θ_pre changed while you fine-tuned: you updated it in place. Copy it first (φ = {k: v.clone() ...}); "
             "otherwise the next learner would start from this learner's φ")
    if not isinstance(phi, dict) or set(phi) != set(theta_pre):
        fail(f"return a dict with the same keys as theta_pre, {sorted(theta_pre)}")
    expected = _reference_fine_tune(model, theta_pre, xs, ys, alpha, steps)
    phi = {k: torch.as_tensor(v).detach().to(torch.float64) for k, v in phi.items()}
    for name in ("embed.weight", "offset.weight"):
        if not torch.allclose(phi[name], theta_pre[name]):
            fail(f"{name} changed; fine-tune only the learner's part of the model, head.weight (the item "
                 "parameters are what past learners taught us)")
    if torch.allclose(phi["head.weight"], expected["head.weight"], atol=1e-8):
        return passed(f"{steps} steps of size α = {alpha} on the head match the inner loop MAML uses: at test time "
                      "fine-tuning and MAML run the same code, only θ differs")
    wrong = {
        "sum": _reference_fine_tune(model, theta_pre, xs, ys, alpha * len(xs), steps),
        "ascent": _reference_fine_tune(model, theta_pre, xs, ys, -alpha, steps),
        "one_step": _reference_fine_tune(model, theta_pre, xs, ys, alpha, 1),
        "unchanged": theta_pre,
    }
    match = [k for k, v in wrong.items() if torch.allclose(phi["head.weight"], v["head.weight"], atol=1e-8)]
    hints = {"sum": f"the step is {len(xs)}x too large: use the MEAN loss over the support set, not the sum",
             "ascent": "the loss went up: step against the gradient, φ ← φ − α ∇L",
             "one_step": f"you took one step; take `steps` = {steps} steps, recomputing the gradient at each new φ",
             "unchanged": "head.weight did not change: apply the update φ ← φ − α ∇L to it"}
    if match:
        fail(hints[match[0]])
    fail("head.weight differs from the reference after 3 steps; each step: loss = mean BCE-with-logits of "
         "functional_call(model, φ, (x_s,)) against y_s, then head ← head − α · d loss / d head")
