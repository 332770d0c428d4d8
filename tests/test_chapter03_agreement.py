"""Chapter 03's notebook and course_lib agree wherever the notebook re-derives a library function.

The notebook's from-scratch code lives in cells tagged "derivation" (loss, adapt, hvp,
meta_gradient_by_hand, meta_loss, meta_gradient) and its exercise solutions in cells tagged
"solution". Those cells are self-contained; this test executes exactly them (fast: no training)
and checks them against course_lib.algorithms, finite differences and the exercise checks.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn
from torch.func import grad

from course_lib.algorithms import MAML, inner_adapt
from course_lib.algorithms.functional import get_loss
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

# torch 2.14 warns from inside torch.func.jvp that torch.jit.script is deprecated (not our code).
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_maml_from_first_principles.ipynb"


def _cells(tag: str) -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def notebook() -> dict:
    """The namespace after running the notebook's derivation cells, in order."""
    sources = _cells("derivation")
    assert len(sources) >= 2, "the notebook must tag its from-scratch cells with 'derivation'"
    namespace: dict = {}
    for source in sources:
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)).double()


def tasks(n_tasks: int = 4, k: int = 6, q: int = 5, seed: int = 1) -> TaskBatch:
    b, _, _ = sample_sinusoid_tasks(n_tasks, k, q, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)))


def theta_of(model: nn.Module) -> dict:
    return {k: v.detach() for k, v in model.named_parameters()}


def assert_same(a: dict, b: dict, atol: float = 1e-10) -> None:
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-9)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_adapt_equals_inner_adapt(notebook, steps, first_order):
    model, batch = net(), tasks()
    theta = theta_of(model)
    x, y = batch.x_support[0], batch.y_support[0]
    ours = notebook["adapt"](model, theta, x, y, 0.05, steps, first_order)
    lib = inner_adapt(model, theta, x, y, None, loss_fn=get_loss("mse"), alpha=0.05, steps=steps,
                      first_order=first_order)
    assert_same(ours, lib)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_loss_and_gradient_equal_course_lib(notebook, steps, first_order):
    model, batch = net(1), tasks(n_tasks=5)
    theta = theta_of(model)
    value = notebook["meta_loss"](model, theta, batch, 0.1, steps, first_order)
    ours = notebook["meta_gradient"](model, theta, batch, 0.1, steps, first_order)
    lib = MAML(copy.deepcopy(model), "mse", alpha=0.1, steps=steps, first_order=first_order)
    lib_value = lib.meta_loss(batch)
    lib_value.backward()
    torch.testing.assert_close(value, lib_value.detach(), atol=1e-12, rtol=1e-12)
    assert_same(ours, {k: p.grad for k, p in lib.theta.items()})


def test_meta_gradient_by_hand_equals_autograd_and_finite_differences(notebook):
    model, batch = net(2), tasks(n_tasks=1)
    theta = theta_of(model)
    xs, ys, xq, yq = batch.x_support[0], batch.y_support[0], batch.x_query[0], batch.y_query[0]
    loss, adapt = notebook["loss"], notebook["adapt"]

    def query_loss(th):
        return loss(model, adapt(model, th, xs, ys, 0.1), xq, yq)

    by_hand = notebook["meta_gradient_by_hand"](model, theta, xs, ys, xq, yq, 0.1)
    assert_same(by_hand, grad(query_loss)(theta), atol=1e-12)
    eps, name = 1e-6, "2.weight"
    for idx in [(0, 0), (3, 7), (15, 15)]:
        plus = {k: v.clone() for k, v in theta.items()}; plus[name][idx] += eps
        minus = {k: v.clone() for k, v in theta.items()}; minus[name][idx] -= eps
        fd = (query_loss(plus) - query_loss(minus)).item() / (2 * eps)
        assert by_hand[name][idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_hvp_equals_explicit_hessian(notebook):
    model, batch = net(3), tasks(n_tasks=1)
    theta = theta_of(model)
    x, y = batch.x_support[0], batch.y_support[0]
    names = list(theta)
    sizes = [theta[k].numel() for k in names]

    def unflatten(flat):
        return {k: c.reshape(theta[k].shape) for k, c in zip(names, torch.split(flat, sizes))}

    flat = torch.cat([theta[k].reshape(-1) for k in names])
    H = torch.func.hessian(lambda f: notebook["loss"](model, unflatten(f), x, y))(flat)
    v = unflatten(torch.randn(flat.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    hv = notebook["hvp"](model, theta, x, y, v)
    torch.testing.assert_close(torch.cat([hv[k].reshape(-1) for k in names]),
                               H @ torch.cat([v[k].reshape(-1) for k in names]), atol=1e-10, rtol=1e-9)


def test_exercise_solutions_pass_their_checks(notebook, capsys):
    sources = _cells("solution")
    assert len(sources) >= 3, "the notebook must tag its revealable solutions with 'solution'"
    namespace = dict(notebook)
    for source in sources:
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - each ends in a check(...) call
    out = capsys.readouterr().out
    assert out.count("PASS") == len(sources), out


def test_notebook_widget_callback_is_called_programmatically():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "go.FigureWidget" in text and ".observe(update" in text
    assert "one_step = update()" in text, "the widget's callback must run once headless (nbval)"
