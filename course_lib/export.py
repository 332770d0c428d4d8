"""Run a distilled student outside eager PyTorch: torch.compile, ONNX export, onnxruntime; time it.

Derived in chapter 10 (Real-time personalization), section 5. A student maps a padded batch of
answers ``items, answers, mask [learners, n]`` to P(correct) of every item ``[learners, n_items]``;
`export_onnx` writes that function as an ONNX graph with the dynamo exporter (batch and number of
answers dynamic), `OnnxStudent` runs it with onnxruntime, `compile_student` with torch.compile,
and `time_updates` measures the latency of one learner update on whatever runs it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["StudentProb", "export_onnx", "OnnxStudent", "compile_student", "time_updates"]


class StudentProb(nn.Module):
    """σ(student(items, answers, mask)): the function that is exported and served."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        return torch.sigmoid(self.student(items, answers, mask))


def _example(n_items: int, learners: int = 3, n: int = 7) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(n_items, (learners, n), generator=g), torch.randint(2, (learners, n), generator=g).float(),
            torch.ones(learners, n))


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence the exporter's INFO chatter (its optimiser logs every pass) for the duration."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for log, _ in saved:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in saved:
            log.setLevel(level)


def export_onnx(student: nn.Module, path: str | Path) -> Path:
    """Export ``student`` (an `course_lib.models.amortized` student) to ONNX with ``dynamo=True``.

    Inputs ``items`` int64, ``answers`` and ``mask`` float32, all ``[learners, n]`` with both sizes
    dynamic; output ``prob [learners, n_items]``. Returns the path written.
    """
    n_items = getattr(getattr(student, "encoder", None), "n_items", None)
    if n_items is None:
        raise ValueError("export_onnx needs a course_lib student (a module with an AnswerSetEncoder .encoder)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    learners, answers = torch.export.Dim("learners", min=1, max=4096), torch.export.Dim("answers", min=1, max=4096)
    shapes = {"items": {0: learners, 1: answers}, "answers": {0: learners, 1: answers},
              "mask": {0: learners, 1: answers}}
    model = StudentProb(student).eval()
    with torch.no_grad(), warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir"):
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
        torch.onnx.export(model, _example(n_items), str(path), dynamo=True, input_names=["items", "answers", "mask"],
                          output_names=["prob"], dynamic_shapes=shapes, verbose=False, optimize=True)
    return path


class OnnxStudent:
    """An exported student run by onnxruntime on the CPU with ``threads`` intra-op threads.

    Call it like the torch student: ``(items, answers, mask)`` tensors or arrays → numpy ``[B, n_items]``.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist; write it with course_lib.export.export_onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, items, answers, mask) -> np.ndarray:
        feed = {"items": np.asarray(items, dtype=np.int64), "answers": np.asarray(answers, dtype=np.float32),
                "mask": np.asarray(mask, dtype=np.float32)}
        return self.session.run(["prob"], feed)[0]


def compile_student(student: nn.Module, example: Sequence[Tensor]) -> Callable[..., Tensor]:
    """``torch.compile`` of the student's probabilities, warmed up on ``example`` (compiling happens here).

    Falls back to eager (with a warning) where compilation fails, e.g. no C++ compiler.
    """
    from course_lib.algorithms.functional import maybe_compile

    fn = maybe_compile(StudentProb(student).eval(), True)
    with torch.no_grad():
        fn(*example)
    return fn


def time_updates(update: Callable[..., Tensor], inputs: Sequence[tuple], warmup: int = 50) -> dict[str, float]:
    """Latency of ``update(*x)`` for each ``x`` of ``inputs`` (one learner update each), in ms.

    Runs on the current torch thread setting (set one thread with `course_lib.device.cpu_threads`).
    Returns wall-clock ``{"p50", "p99", "mean"}``, the same percentiles of the calling thread's CPU
    time ``{"cpu_p50", "cpu_p99"}`` and ``n``; the first ``warmup`` calls are not counted. On a
    machine shared with other jobs the wall-clock tail includes the time the process waited for a
    core (preemption); the CPU-time tail is what the update itself costs.
    """
    if len(inputs) == 0:
        raise ValueError("time_updates needs at least one input")
    for x in list(inputs)[:warmup]:
        update(*x)
    wall, cpu = np.empty(len(inputs)), np.empty(len(inputs))
    for i, x in enumerate(inputs):
        c0, t0 = time.thread_time(), time.perf_counter()
        update(*x)
        wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
    ms, cpu_ms = wall * 1e3, cpu * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()),
            "cpu_p50": float(np.percentile(cpu_ms, 50)), "cpu_p99": float(np.percentile(cpu_ms, 99)),
            "n": int(len(ms))}
