"""The one contract every study follows: ``run(config) -> Result``, a registry of methods, one CLI.

A *study* (one module per chapter use case in ``course_lib.experiments``) is a function
``run(config: Config, *, progress=True, device=None) -> Result`` where ``Config`` is a frozen
dataclass of its settings. The notebook and the command line call the same ``run``, so the numbers
a chapter shows are the numbers ``python -m course_lib.experiments.<study>`` prints and writes.

* `Result` holds the table (``rows``: one dict per method × setting), the ``config`` that produced
  it, the wall time, and ``details`` (curves, fitted parameters, anything a figure needs). Times
  go only in ``wall_s`` and ``details["timings"]``, so everything else is reproducible by seed.
* `Registry` maps method names to the functions that run them, so a study has no if/elif chain
  over method names and an unknown name gets an error that lists the known ones.
* `cli` is the shared command line: ``--set name=value`` overrides a ``Config`` field (parsed to
  the field's type; tuples as comma lists), ``--json FILE`` writes the result, byte-identical for
  the same seed and machine.

No study imports another study: what two studies share lives below ``experiments/`` (in
``models/``, ``baselines/``, ``tasks.py``, ``metrics.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import torch

__all__ = ["Result", "Registry", "json_safe", "save_json", "load_json", "parse_setting", "cli", "stopwatch"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class Result:
    """What a study returns: the table, the settings that made it, its wall time and its details.

    ``rows``: one flat dict per (method, setting) — what `table` shows and the README quotes.
    ``details``: nested JSON-able data a figure or a test needs (curves, per-learner scores, ...).
    """

    study: str
    rows: list[dict]
    config: dict
    wall_s: float
    details: dict = dataclasses.field(default_factory=dict)

    def table(self, index: str | Sequence[str] | None = None, columns: str | None = None,
              values: str | None = None) -> pd.DataFrame:
        """The rows as a DataFrame; with ``index/columns/values`` a pivot (e.g. method × K of AUC)."""
        df = pd.DataFrame(self.rows)
        if columns is None:
            return df if index is None else df.set_index(index)
        return df.pivot_table(index=index, columns=columns, values=values, sort=False)

    def to_dict(self, timing: bool = True) -> dict:
        """Everything, as plain JSON-able Python (the format `save_json` writes).

        ``timing=False`` leaves out what depends on the machine's speed (``wall_s`` and
        ``details["timings"]``), so two runs with the same seed give identical output.
        """
        details = self.details if timing else {k: v for k, v in self.details.items() if k != "timings"}
        return json_safe({"study": self.study, "config": self.config, "wall_s": self.wall_s if timing else None,
                          "rows": self.rows, "details": details})

    @classmethod
    def from_dict(cls, obj: Mapping) -> "Result":
        """Rebuild a Result from `to_dict`'s output; a missing key gets an error that names it."""
        missing = [k for k in ("study", "rows", "config", "wall_s") if k not in obj]
        if missing:
            raise ValueError(f"not a course_lib result: missing {missing}; regenerate it with the study's CLI "
                             "(python -m course_lib.experiments.<study> --json FILE)")
        return cls(study=obj["study"], rows=list(obj["rows"]), config=dict(obj["config"]),
                   wall_s=float(obj["wall_s"] or float("nan")), details=dict(obj.get("details", {})))


class Registry(Generic[F]):
    """Method name -> function. ``@methods.register("maml")`` adds one; ``methods["maml"]`` gets it.

    An unknown name raises ``ValueError`` listing the registered names, so a typo in a config or on
    the command line says what to write instead.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = fn
            return fn
        return add

    def __getitem__(self, name: str) -> F:
        if name not in self._items:
            raise ValueError(f"unknown {self.what} {name!r}; choose from {sorted(self._items)}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def check(self, names: Sequence[str]) -> tuple[str, ...]:
        """Validate a list of method names up front (before any training starts)."""
        for n in names:
            self[n]
        return tuple(names)


def json_safe(obj: Any) -> Any:
    """Plain JSON types, recursively: tensors/arrays -> lists, numpy scalars -> Python, NaN/inf -> None,
    tuples -> lists, dataclasses -> dicts, dict keys -> str."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a results JSON; convert it to numbers or text first")


def save_json(result: Result | Mapping, path: str | Path, *, timing: bool = True) -> Path:
    """Write a result as JSON (sorted keys, so the same result gives the same bytes; with
    ``timing=False`` the wall times are left out and the same seed gives the same file)."""
    obj = result.to_dict(timing) if isinstance(result, Result) else json_safe(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def load_json(path: str | Path) -> Result:
    """Read a result written by `save_json`; a missing or corrupted file gets an error that says how to redo it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create it with the study's CLI (--json {path})")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is corrupted or truncated: delete it and "
                         "regenerate it with the study's CLI") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a results object; regenerate it with the study's CLI")
    return Result.from_dict(obj)


def parse_setting(config_cls: type, text: str) -> tuple[str, Any]:
    """``name=value`` for a field of the dataclass ``config_cls``, the value parsed to the field's type.

    Tuples take a comma list (``ks=1,5,10``); booleans take true/false/1/0.
    """
    if "=" not in text:
        raise ValueError(f"--set expects name=value, got {text!r}")
    name, value = text.split("=", 1)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if name not in fields:
        raise ValueError(f"unknown setting {name!r}; the settings are {sorted(fields)}")
    default = getattr(config_cls(), name)
    return name, _parse_value(default, value, name)


def _parse_value(default: Any, value: str, name: str) -> Any:
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return tuple(_parse_value(kind(), v, name) for v in value.split(",") if v)
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name} is true/false, got {value!r}")
        return value.lower() in ("true", "1")
    if default is None:
        return value
    try:
        return type(default)(value)
    except ValueError:
        raise ValueError(f"{name} must be a {type(default).__name__}, got {value!r}") from None


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` -> seconds since the block started."""
    t0 = time.perf_counter()
    yield lambda: time.perf_counter() - t0


def cli(run: Callable[..., Result], config_cls: type, argv: Sequence[str] | None = None, *,
        description: str = "", show: Callable[[Result], str] | None = None) -> Result:
    """The shared command line of every study: ``--set``, ``--json``, ``--device``, ``--no-progress``.

    Prints ``show(result)`` (default: the rows as a table) and the wall time; writes the JSON if asked.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting, e.g. --set seed=1 --set ks=1,5,10")
    parser.add_argument("--json", help="write the result to this file")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    try:
        config = config_cls(**dict(parse_setting(config_cls, t) for t in args.set))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    result = run(config, progress=not args.no_progress, device=args.device)
    with pd.option_context("display.width", 160, "display.max_columns", 30, "display.max_rows", 200):
        print(show(result) if show else result.table().to_string(index=False))
    print(f"wall time {result.wall_s:.1f} s")
    if args.json:
        print(f"wrote {save_json(result, args.json)}")
    return result
