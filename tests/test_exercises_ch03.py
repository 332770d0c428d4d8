"""Chapter 03 exercise checks: right answers pass, placeholders are reported, typical mistakes fail clearly."""

import pytest
import torch
from torch.func import functional_call, grad, vmap

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch03
from course_lib.algorithms.protonet import prototype_linear_classifier


def mse(model, params, x, y):
    return (functional_call(model, params, (x,)) - y).pow(2).mean()


def inner_update(model, theta, x, y, alpha):
    g = grad(mse, argnums=1)(model, theta, x, y)
    return {k: theta[k] - alpha * g[k] for k in theta}


def meta_loss(model, theta, batch, alpha):
    def one(xs, ys, xq, yq):
        return mse(model, inner_update(model, theta, xs, ys, alpha), xq, yq)

    return vmap(one)(batch.x_support, batch.y_support, batch.x_query, batch.y_query).mean()


def fomaml_gradient(model, theta, batch, alpha):
    def one(xs, ys, xq, yq):
        phi = inner_update(model, theta, xs, ys, alpha)
        return grad(mse, argnums=1)(model, phi, xq, yq)

    g = vmap(one)(batch.x_support, batch.y_support, batch.x_query, batch.y_query)
    return {k: v.mean(0) for k, v in g.items()}


def quadratic(theta, alpha, a_s, c_s, a_q, c_q):
    phi = theta - alpha * a_s * (theta - c_s)
    return (1 - alpha * a_s) * a_q * (phi - c_q)


# ----------------------------------------------------------------------------- placeholders
@pytest.mark.parametrize("check", [ch03.check_inner_update, ch03.check_meta_loss,
                                   ch03.check_quadratic_meta_gradient, ch03.check_fomaml_gradient])
def test_placeholder_none_is_reported_not_raised(check, capsys):
    assert check(None) is False
    assert "Not filled in yet" in capsys.readouterr().out


def test_function_returning_none_is_reported_not_raised(capsys):
    assert ch03.check_inner_update(lambda model, theta, x, y, alpha: None) is False
    assert ch03.check_meta_loss(lambda model, theta, batch, alpha: None) is False
    assert ch03.check_quadratic_meta_gradient(lambda *args: None) is False
    assert ch03.check_fomaml_gradient(lambda model, theta, batch, alpha: None) is False
    assert capsys.readouterr().out.count("Not filled in yet") == 4


# ----------------------------------------------------------------------------- right answers
def test_right_answers_pass(capsys):
    assert ch03.check_inner_update(inner_update)
    assert ch03.check_meta_loss(meta_loss)
    assert ch03.check_quadratic_meta_gradient(quadratic)
    assert ch03.check_fomaml_gradient(fomaml_gradient)
    assert capsys.readouterr().out.count("PASS") == 4


def test_autograd_answer_with_create_graph_passes():
    def inner_autograd(model, theta, x, y, alpha):
        loss = mse(model, theta, x, y)
        g = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        return {k: t - alpha * gk for (k, t), gk in zip(theta.items(), g)}

    # The check's first call passes θ without requires_grad; an autograd answer needs leaves that do.
    def wrapped(model, theta, x, y, alpha):
        theta = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in theta.items()}
        return inner_autograd(model, theta, x, y, alpha)

    assert ch03.check_inner_update(wrapped)


def test_quadratic_reference_matches_closed_form():
    for case in [(0.3, 0.1, 2.0, 1.0, 3.0, -1.0), (1.0, 0.5, 0.2, 0.0, 1.0, 4.0)]:
        assert ch03.quadratic_meta_gradient(*case) == pytest.approx(quadratic(*case), rel=1e-12)
        theta, alpha, a_s, c_s, a_q, c_q = case
        phi = theta - alpha * a_s * (theta - c_s)
        assert ch03.quadratic_meta_gradient(*case, first_order=True) == pytest.approx(a_q * (phi - c_q))


# ----------------------------------------------------------------------------- typical mistakes
def _fails(check, answer, match):
    with pytest.raises(ExerciseError, match=match):
        check(answer)


def test_inner_update_mistakes():
    c = ch03.check_inner_update
    _fails(c, lambda m, th, x, y, a: {k: th[k] + a * grad(mse, argnums=1)(m, th, x, y)[k] for k in th}, "downhill")
    _fails(c, lambda m, th, x, y, a: grad(mse, argnums=1)(m, th, x, y), "returned the gradient")
    _fails(c, lambda m, th, x, y, a: {k: th[k] - grad(mse, argnums=1)(m, th, x, y)[k] for k in th}, "ignores alpha")
    _fails(c, lambda m, th, x, y, a: {k: th[k] - 0.1 * grad(mse, argnums=1)(m, th, x, y)[k] for k in th},
           "hard-code")
    _fails(c, lambda m, th, x, y, a: {k: v.detach() for k, v in inner_update(m, th, x, y, a).items()},
           "does not depend on θ")

    def first_order(m, th, x, y, a):
        g = grad(mse, argnums=1)(m, th, x, y)
        return {k: th[k] - a * g[k].detach() for k in th}

    _fails(c, first_order, "first-order")
    _fails(c, lambda m, th, x, y, a: {"weight": th["0.weight"]}, "keys")
    _fails(c, lambda m, th, x, y, a: [th[k] for k in th], "must be a dict")
    _fails(c, lambda m, th, x, y, a: 1 / 0, "ZeroDivisionError")


def test_meta_loss_mistakes():
    c = ch03.check_meta_loss

    def summed(m, th, b, a):
        return meta_loss(m, th, b, a) * b.n_tasks

    def no_adaptation(m, th, b, a):
        return vmap(lambda xq, yq: mse(m, th, xq, yq))(b.x_query, b.y_query).mean()

    def on_support(m, th, b, a):
        def one(xs, ys):
            return mse(m, inner_update(m, th, xs, ys, a), xs, ys)
        return vmap(one)(b.x_support, b.y_support).mean()

    def swapped(m, th, b, a):
        def one(xs, ys, xq, yq):
            return mse(m, inner_update(m, th, xq, yq, a), xs, ys)
        return vmap(one)(b.x_support, b.y_support, b.x_query, b.y_query).mean()

    def first_order(m, th, b, a):
        def one(xs, ys, xq, yq):
            g = grad(mse, argnums=1)(m, th, xs, ys)
            return mse(m, {k: th[k] - a * g[k].detach() for k in th}, xq, yq)
        return vmap(one)(b.x_support, b.y_support, b.x_query, b.y_query).mean()

    _fails(c, summed, "sum")
    _fails(c, no_adaptation, "before adaptation")
    _fails(c, on_support, "support set")
    _fails(c, swapped, "swapped")
    _fails(c, first_order, "first-order")
    _fails(c, lambda m, th, b, a: meta_loss(m, th, b, 0.1), "alpha argument")
    _fails(c, lambda m, th, b, a: vmap(lambda xs, ys, xq, yq: mse(m, inner_update(m, th, xs, ys, a), xq, yq))(
        b.x_support, b.y_support, b.x_query, b.y_query), "scalar")
    _fails(c, lambda m, th, b, a: meta_loss(m, th, b, a).detach(), "not differentiable")


def test_quadratic_mistakes():
    c = ch03.check_quadratic_meta_gradient

    def phi(t, a, a_s, c_s):
        return t - a * a_s * (t - c_s)

    _fails(c, lambda t, a, a_s, c_s, a_q, c_q: a_q * (phi(t, a, a_s, c_s) - c_q), "first-order")
    _fails(c, lambda t, a, a_s, c_s, a_q, c_q: (1 + a * a_s) * a_q * (phi(t, a, a_s, c_s) - c_q), "sign")
    _fails(c, lambda t, a, a_s, c_s, a_q, c_q: (1 - a * a_s) * a_q * (t - c_q), "evaluated at θ")
    _fails(c, lambda *args: 42.0, "meta-gradient is")
    _fails(c, lambda *args: "x", "one number")


def test_fomaml_mistakes():
    c = ch03.check_fomaml_gradient

    def second_order(m, th, b, a):
        return grad(meta_loss, argnums=1)(m, th, b, a)

    def summed(m, th, b, a):
        return {k: v * b.n_tasks for k, v in fomaml_gradient(m, th, b, a).items()}

    def at_theta(m, th, b, a):
        g = vmap(lambda xq, yq: grad(mse, argnums=1)(m, th, xq, yq))(b.x_query, b.y_query)
        return {k: v.mean(0) for k, v in g.items()}

    _fails(c, second_order, "second-order")
    _fails(c, summed, "too large")
    _fails(c, at_theta, "no adaptation")
    _fails(c, lambda m, th, b, a: {k: torch.zeros_like(v) for k, v in th.items()}, "differs")


# ----------------------------------------------------------------------------- calling the answer
def adapt(model, theta, x, y, alpha, steps=1):
    """Stands in for chapter 03's own `adapt` of section 2 (a global of the notebook)."""
    return inner_update(model, theta, x, y, alpha)


def test_answers_that_call_the_library_are_rejected():
    from course_lib import algorithms
    from course_lib.algorithms import MAML, inner_adapt, maml_loss

    _fails(ch03.check_inner_update,
           lambda m, th, x, y, a: inner_adapt(m, th, x, y, None, loss_fn="mse", alpha=a, steps=1), "inner_adapt")
    _fails(ch03.check_inner_update, lambda m, th, x, y, a: adapt(m, th, x, y, a), "`adapt`")
    _fails(ch03.check_meta_loss, lambda m, th, b, a: algorithms.maml_loss(m, th, b, alpha=a), "maml_loss")
    _fails(ch03.check_meta_loss, lambda m, th, b, a: maml_loss(m, th, b, alpha=a), "maml_loss")

    def via_maml(m, th, b, a):
        learner = MAML(m, "mse", alpha=a, first_order=True)
        learner.meta_loss(b).backward()
        return {k: p.grad for k, p in learner.theta.items()}

    _fails(ch03.check_fomaml_gradient, via_maml, "MAML")
    _fails(ch03.check_quadratic_meta_gradient, lambda *case: ch03.quadratic_meta_gradient(*case),
           "quadratic_meta_gradient")


def test_hiding_the_call_in_a_helper_does_not_help():
    from course_lib.algorithms import inner_adapt

    def helper(m, th, x, y, a):
        return inner_adapt(m, th, x, y, None, loss_fn="mse", alpha=a, steps=1)

    _fails(ch03.check_inner_update, lambda m, th, x, y, a: helper(m, th, x, y, a), "inner_adapt")


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(m, th, x, y, a):
        seen.append(x.clone())
        return inner_update(m, th, x, y, a)

    ch03.check_inner_update(recording)
    ch03.check_inner_update(recording)
    assert not torch.equal(seen[0], seen[-1])


# ----------------------------------------------------------------------------- exercise 5 (ProtoMAML's head)
def head_step(z, y, n_way, alpha):
    c = torch.stack([z[y == k].mean(0) for k in range(n_way)])
    W, b = 2 * c, -(c * c).sum(1)
    P = torch.softmax(z @ W.T + b, dim=1)
    G = (P - torch.nn.functional.one_hot(y, n_way).to(z.dtype)) / len(z)
    return W - alpha * G.T @ z, b - alpha * G.sum(0)


def test_prototype_head_step_right_answer_passes_and_placeholders_are_reported(capsys):
    assert ch03.check_prototype_head_step(head_step)
    assert ch03.check_prototype_head_step(None) is False
    assert ch03.check_prototype_head_step(lambda z, y, n, a: None) is False


def test_prototype_head_step_mistakes_and_library_calls_fail():
    c = ch03.check_prototype_head_step
    _fails(c, lambda z, y, n, a: head_step(z, y, n, 0.0), "before the step")
    _fails(c, lambda z, y, n, a: head_step(z, y, n, -a), "uphill")
    _fails(c, lambda z, y, n, a: head_step(z, y, n, a * len(z)), "too large")
    _fails(c, lambda z, y, n, a: head_step(z, y, n, a)[0], "pair")
    _fails(c, lambda z, y, n, a: (head_step(z, y, n, a)[0][:2], head_step(z, y, n, a)[1]), "n_way, d")

    def half_init(z, y, n_way, alpha):
        c = torch.stack([z[y == k].mean(0) for k in range(n_way)])
        W, b = c, -(c * c).sum(1)
        P = torch.softmax(z @ W.T + b, dim=1)
        G = (P - torch.nn.functional.one_hot(y, n_way).to(z.dtype)) / len(z)
        return W - alpha * G.T @ z, b - alpha * G.sum(0)

    _fails(c, half_init, "W = 2c")

    _fails(c, head_with_library, "prototype_linear_classifier")
    _fails(c, head_with_autograd, "torch.(autograd|func)")


def head_with_library(z, y, n_way, alpha):
    W, b = prototype_linear_classifier(torch.stack([z[y == k].mean(0) for k in range(n_way)]))
    return head_step_from(W, b, z, y, n_way, alpha)


def head_with_autograd(z, y, n_way, alpha):
    c = torch.stack([z[y == k].mean(0) for k in range(n_way)])
    W, b = (2 * c).requires_grad_(), (-(c * c).sum(1)).requires_grad_()
    gW, gb = torch.autograd.grad(torch.nn.functional.cross_entropy(z @ W.T + b, y), [W, b])
    return W - alpha * gW, b - alpha * gb


def head_step_from(W, b, z, y, n_way, alpha):
    P = torch.softmax(z @ W.T + b, dim=1)
    G = (P - torch.nn.functional.one_hot(y, n_way).to(z.dtype)) / len(z)
    return W - alpha * G.T @ z, b - alpha * G.sum(0)
