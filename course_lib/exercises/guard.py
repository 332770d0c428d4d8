"""Reject exercise answers that call the implementation the exercise asks the reader to write.

A check that compares the reader's function with ``course_lib`` on fixed inputs is passed by
``return course_lib.algorithms.inner_adapt(...)``: the reader learns nothing. `forbid_calls` reads
the answer's code (its code object, the nested functions and lambdas inside it, its globals and
closure) and fails with a message naming what was called. It follows the reader's own helper
functions (a solution may reuse the reader's previous exercise), so hiding the call one level
down does not help.

It reads names, not behaviour: it is a guard against the shortcut, not a sandbox.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from course_lib.exercises import fail

__all__ = ["forbid_calls", "referenced_objects"]


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    """``code`` and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _names(fn: types.FunctionType) -> set[str]:
    names: set[str] = set()
    for code in _code_objects(fn.__code__):
        names.update(code.co_names)
        names.update(code.co_freevars)
    return names


def referenced_objects(fn: Callable[..., Any], *, depth: int = 3) -> list[tuple[str, Any]]:
    """Every (name, object) the function can reach by name: globals, closure cells, attributes.

    Attribute chains such as ``algorithms.inner_adapt`` or ``torch.func.jacrev`` are resolved up to two
    modules deep (``module.name`` and ``module.sub.name`` for every module the function references). Helper functions that live in the
    same namespace (the notebook's own functions) are followed up to ``depth`` levels.
    """
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def visit(f: Any, level: int) -> None:
        f = inspect.unwrap(f) if callable(f) else f
        if isinstance(f, types.MethodType):
            f = f.__func__
        if not isinstance(f, types.FunctionType) or id(f) in seen or level > depth:
            return
        seen.add(id(f))
        names = _names(f)
        scope: dict[str, Any] = dict(f.__globals__)
        if f.__closure__:
            for name, cell in zip(f.__code__.co_freevars, f.__closure__):
                try:
                    scope[name] = cell.cell_contents
                except ValueError:          # an empty cell (a name assigned later)
                    continue
        objects = [(n, scope[n]) for n in names if n in scope]
        modules = [obj for _, obj in objects if isinstance(obj, types.ModuleType)]
        for _ in range(2):                  # ``torch.func.jacrev``: a module's submodule's function
            reached = [(f"{m.__name__}.{n}", getattr(m, n)) for m in modules for n in names if hasattr(m, n)]
            objects += reached
            modules = [obj for _, obj in reached if isinstance(obj, types.ModuleType)]
        for name, obj in objects:
            found.append((name, obj))
            if isinstance(obj, types.FunctionType) and obj.__globals__ is f.__globals__:
                visit(obj, level + 1)       # the reader's (or the notebook's) own helper

    visit(fn, 0)
    return found


def forbid_calls(fn: Callable[..., Any], forbidden: Mapping[str, Any] | Iterable[Any], what: str,
                 *, forbidden_names: Mapping[str, str] | None = None) -> None:
    """Fail when ``fn`` uses one of the ``forbidden`` objects (the implementation being asked for).

    ``forbidden`` maps a readable name to the object (a function, class or method), or is a plain
    list of objects. ``forbidden_names`` maps a global *name* the notebook defined earlier (e.g.
    chapter 03's ``adapt``) to a description, for functions the check cannot import. ``what`` says
    what the exercise asks for, for the message. Returns None when the answer is its own work.
    """
    items = dict(forbidden) if isinstance(forbidden, Mapping) else {
        getattr(obj, "__qualname__", repr(obj)): obj for obj in forbidden}
    targets = {id(inspect.unwrap(obj) if callable(obj) else obj): label for label, obj in items.items()}
    for name, obj in referenced_objects(fn):
        candidates = [obj, inspect.unwrap(obj) if callable(obj) else obj, getattr(obj, "__func__", None)]
        hit = next((targets[id(c)] for c in candidates if c is not None and id(c) in targets), None)
        if hit is not None:
            fail(f"your answer calls {hit} (as `{name}`), the very thing this exercise asks you to write. "
                 f"Write {what} yourself from the formula; the check compares it with its own reference "
                 "on fresh random inputs")
    if forbidden_names:
        glob = getattr(inspect.unwrap(fn), "__globals__", {})
        used = {n for n, _ in referenced_objects(fn)}
        for name, description in forbidden_names.items():
            if name in used and isinstance(glob.get(name), types.FunctionType) and glob[name] is not fn:
                fail(f"your answer calls `{name}`, {description}, which already does what this exercise asks. "
                     f"Write {what} yourself (rename your own helper if it happens to be called `{name}`)")
