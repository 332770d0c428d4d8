"""Chapter 01 checks: right answers pass, placeholders report, typical wrong answers fail helpfully."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from course_lib.algorithms import inner_adapt
from course_lib.algorithms.functional import get_loss, task_loss
from course_lib.data.responses import split_learners
from course_lib.exercises import ExerciseError
from course_lib.exercises import ch01

# ------------------------------------------------------------------------------------ exercise 1


def right_split(n, fractions, seed):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return {"train": perm[:n_train], "validation": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}


def test_split_check_passes_right_answers():
    assert ch01.check_split_by_learner(right_split) is True
    assert ch01.check_split_by_learner(lambda n, f, s: split_learners(n, f, seed=s)) is True
    assert ch01.check_split_by_learner(None) is False
    assert ch01.check_split_by_learner(lambda n, f, s: None) is False


def test_split_check_fails_typical_mistakes():
    def with_replacement(n, f, s):
        g = torch.Generator().manual_seed(s)
        return {"train": torch.randint(n, (62,), generator=g), "validation": torch.randint(n, (21,), generator=g),
                "test": torch.randint(n, (20,), generator=g)}

    def overlapping(n, f, s):
        out = right_split(n, f, s)
        out["test"] = torch.cat([out["test"], out["train"][:3]])
        return out

    def drops_learners(n, f, s):
        out = right_split(n, f, s)
        out["test"] = out["test"][:-5]
        return out

    def by_position(n, f, s):
        ids = torch.arange(n)
        return {"train": ids[:62], "validation": ids[62:83], "test": ids[83:]}

    def unseeded(n, f, s):
        return right_split(n, f, int(torch.randint(1000, (1,))))

    cases = {"lists a learner twice|in both": with_replacement, "in both train and test": overlapping,
             "in no split": drops_learners, "not random": by_position,
             "exactly the keys": lambda n, f, s: {"train": [0], "test": [1]},
             "about 61.8": lambda n, f, s: right_split(n, (0.7, 0.1, 0.2), s),
             "reproducible": unseeded}
    for match, fn in cases.items():
        with pytest.raises(ExerciseError, match=match):
            ch01.check_split_by_learner(fn)


# ------------------------------------------------------------------------------------ exercise 2


def right_support_query(answers, k_shot, generator):
    answered = torch.nonzero(~torch.isnan(answers)).flatten()
    if len(answered) < k_shot + 1:
        raise ValueError(f"only {len(answered)} answered items; K = {k_shot} needs at least {k_shot + 1}")
    perm = answered[torch.randperm(len(answered), generator=generator)]
    return perm[:k_shot], perm[k_shot:]


def test_support_query_check():
    assert ch01.check_support_query(right_support_query) is True
    assert ch01.check_support_query(None) is False
    assert ch01.check_support_query(lambda a, k, g: None) is False


def test_support_query_check_fails_typical_mistakes():
    def uses_missing(answers, k, g):
        perm = torch.randperm(len(answers), generator=g)
        return perm[:k], perm[k:]

    def overlap(answers, k, g):
        s, q = right_support_query(answers, k, g)
        return s, torch.cat([q, s[:1]])

    def first_k(answers, k, g):
        answered = torch.nonzero(~torch.isnan(answers)).flatten()
        if len(answered) <= k:
            raise ValueError("too few")
        return answered[:k], answered[k:]

    def no_check(answers, k, g):
        answered = torch.nonzero(~torch.isnan(answers)).flatten()
        perm = answered[torch.randperm(len(answered), generator=g)]
        return perm[:k], perm[k:]

    def drops_query(answers, k, g):
        s, q = right_support_query(answers, k, g)
        return s, q[:1]

    cases = {"not answered": uses_missing, "both the support and the query": overlap, "at random": first_k,
             "raise a ValueError": no_check, "in neither set": drops_query,
             "exactly K": lambda a, k, g: right_support_query(a, k + 1, g)}
    for match, fn in cases.items():
        with pytest.raises(ExerciseError, match=match):
            ch01.check_support_query(fn)


# ------------------------------------------------------------------------------------ exercise 3

BCE = get_loss("bce")


def bce(model, params, x, y):
    return F.binary_cross_entropy_with_logits(functional_call(model, params, (x,)), y)


def adapted(model, theta, x, y, alpha, create_graph=True):
    grads = torch.autograd.grad(bce(model, theta, x, y), list(theta.values()), create_graph=create_graph)
    return {k: v - alpha * g for (k, v), g in zip(theta.items(), grads)}


def right_maml(model, theta, x_s, y_s, x_q, y_q, alpha):
    return bce(model, adapted(model, theta, x_s, y_s, alpha), x_q, y_q)


def test_maml_objective_check():
    assert ch01.check_maml_objective(right_maml) is True
    assert ch01.check_maml_objective(None) is False
    assert ch01.check_maml_objective(lambda *a: None) is False


def test_maml_objective_check_fails_typical_mistakes():
    def pretraining(model, theta, x_s, y_s, x_q, y_q, alpha):
        return bce(model, theta, x_q, y_q)

    def on_query(model, theta, x_s, y_s, x_q, y_q, alpha):
        return right_maml(model, theta, x_q, y_q, x_q, y_q, alpha)

    def on_support(model, theta, x_s, y_s, x_q, y_q, alpha):
        return right_maml(model, theta, x_s, y_s, x_s, y_s, alpha)

    def first_order(model, theta, x_s, y_s, x_q, y_q, alpha):
        return bce(model, adapted(model, theta, x_s, y_s, alpha, create_graph=False), x_q, y_q)

    def detached(model, theta, x_s, y_s, x_q, y_q, alpha):
        return right_maml(model, theta, x_s, y_s, x_q, y_q, alpha).detach()

    cases = {"pretraining objective": pretraining, "leakage": on_query, "scored φ on the support": on_support,
             "first-order": first_order, "no gradient": detached,
             "scalar torch.Tensor": lambda *a: right_maml(*a).detach().item(),
             "went uphill": lambda m, t, xs, ys, xq, yq, a: right_maml(m, t, xs, ys, xq, yq, -a),
             "the reference gives": lambda *a: right_maml(*a) * 2}
    for match, fn in cases.items():
        with pytest.raises(ExerciseError, match=match):
            ch01.check_maml_objective(fn)


# ------------------------------------------------------------------------------------ exercise 4


def right_fine_tune(model, theta_pre, x_s, y_s, alpha, steps):
    phi = {k: v.clone() for k, v in theta_pre.items()}
    for _ in range(steps):
        head = phi["head.weight"].requires_grad_()
        loss = F.binary_cross_entropy_with_logits(functional_call(model, phi, (x_s,)), y_s)
        (grad,) = torch.autograd.grad(loss, head)
        phi["head.weight"] = (head - alpha * grad).detach()
    return phi


def test_fine_tune_check():
    assert ch01.check_fine_tune(right_fine_tune) is True
    assert ch01.check_fine_tune(None) is False
    assert ch01.check_fine_tune(lambda *a: None) is False


def test_fine_tune_check_fails_typical_mistakes():
    def all_params(model, theta_pre, x_s, y_s, alpha, steps):
        phi = {k: v.clone().requires_grad_() for k, v in theta_pre.items()}
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(functional_call(model, phi, (x_s,)), y_s)
            grads = torch.autograd.grad(loss, list(phi.values()))
            phi = {k: (v - alpha * g).detach().requires_grad_() for (k, v), g in zip(phi.items(), grads)}
        return phi

    def in_place(model, theta_pre, x_s, y_s, alpha, steps):
        phi = right_fine_tune(model, theta_pre, x_s, y_s, alpha, steps)
        theta_pre["head.weight"].copy_(phi["head.weight"])
        return phi

    def summed(model, theta_pre, x_s, y_s, alpha, steps):
        return right_fine_tune(model, theta_pre, x_s, y_s, alpha * len(x_s), steps)

    cases = {"embed.weight changed": all_params, "in place": in_place, "MEAN loss": summed,
             "uphill|went up": lambda m, t, xs, ys, a, s: right_fine_tune(m, t, xs, ys, -a, s),
             "you took one step": lambda m, t, xs, ys, a, s: right_fine_tune(m, t, xs, ys, a, 1),
             "did not change": lambda m, t, xs, ys, a, s: {k: v.clone() for k, v in t.items()},
             "same keys": lambda m, t, xs, ys, a, s: {"head.weight": t["head.weight"]},
             "differs from the reference": lambda m, t, xs, ys, a, s: right_fine_tune(m, t, xs, ys, a * 0.9, s)}
    for match, fn in cases.items():
        with pytest.raises(ExerciseError, match=match):
            ch01.check_fine_tune(fn)


# ------------------------------------------------------------------------------------ calling the answer

def test_answers_that_call_the_library_are_rejected():
    from course_lib.baselines import fine_tuning

    def library_maml(model, theta, x_s, y_s, x_q, y_q, alpha):
        phi = inner_adapt(model, theta, x_s, y_s, None, loss_fn=BCE, alpha=alpha, steps=1)
        return task_loss(model, phi, BCE, x_q, y_q)

    def library_fine_tune(model, theta_pre, x_s, y_s, alpha, steps):
        return inner_adapt(model, theta_pre, x_s, y_s, None, loss_fn=BCE, alpha=alpha, steps=steps, adapt=["head."])

    def adapt_path_fine_tune(model, theta_pre, x_s, y_s, alpha, steps):
        return fine_tuning.adapt_path(model, theta_pre, x_s, y_s, alpha, steps)

    for check, fn in ((ch01.check_maml_objective, library_maml),
                      (ch01.check_fine_tune, library_fine_tune),
                      (ch01.check_fine_tune, adapt_path_fine_tune)):
        with pytest.raises(ExerciseError, match="your answer calls"):
            check(fn)


def test_maml_objective_check_draws_fresh_tasks():
    seen = []

    def recording(model, theta, x_s, y_s, x_q, y_q, alpha):
        seen.append(model.features.clone())
        return right_maml(model, theta, x_s, y_s, x_q, y_q, alpha)

    ch01.check_maml_objective(recording)
    ch01.check_maml_objective(recording)
    assert not torch.equal(seen[0], seen[-1])
