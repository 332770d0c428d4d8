"""The served model file: the teacher's states and the distilled student, loaded with weights_only=True.

Derived in chapter 10, section 6. One ``torch.save`` of plain dicts, lists, numbers, strings and
tensors (no pickled classes), so ``torch.load(..., weights_only=True)`` can read it safely.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from course_lib.models.amortized import GradientTeacher, build_student

__all__ = ["FORMAT", "save_bundle", "load_bundle"]

FORMAT = "course_lib.serving/1"


def save_bundle(path: str | Path, teacher: GradientTeacher, student: nn.Module, kind: str, options: dict) -> Path:
    """Write the teacher (``{K: MetaIRT state}``, α, steps) and the student (kind, options, state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bundle = {"format": FORMAT, "n_items": int(teacher.n_items), "dims": int(teacher.dims),
              "teacher": {"alpha": teacher.alpha, "steps": teacher.steps,
                          "states": {str(k): s for k, s in teacher.states().items()}},
              "student": {"kind": kind, "options": dict(options),
                          "state": {n: v.detach().clone() for n, v in student.state_dict().items()}}}
    torch.save(bundle, path)
    return path


def load_bundle(path: str | Path) -> tuple[GradientTeacher, nn.Module]:
    """(teacher, student) from a file written by `save_bundle`; a wrong file gets an error saying how to redo it."""
    path = Path(path)
    redo = ("create it with: python -m course_lib.experiments.distillation --set save_model=" + str(path))
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist; {redo}")
    try:
        bundle = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"{path} is not a readable model file ({type(err).__name__}: {err}); {redo}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} model file; {redo}")
    t = bundle["teacher"]
    teacher = GradientTeacher({int(k): s for k, s in t["states"].items()}, alpha=t["alpha"], steps=t["steps"])
    s = bundle["student"]
    student = build_student(s["kind"], bundle["n_items"], bundle["dims"], s["options"])
    student.load_state_dict(s["state"])
    student.eval().requires_grad_(False)
    return teacher, student
