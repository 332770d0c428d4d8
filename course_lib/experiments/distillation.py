"""Distil chapter 05's gradient-adapted meta-learner into one-pass students; accuracy and latency.

Derived in chapter 10 (Real-time personalization). Teacher: MAML on `MetaIRT` trained on SweSAT
with chapter 05's recipe and protocol (split by learner 70/10/20, one meta-learner per K, adapted by
gradient steps on the ability). Students (`course_lib.models.amortized`): the amortised adapter
(answers → ability φᵢ in one pass → IRT head) and a smaller network (answers → logits directly),
both distilled on the teacher's adapted soft predictions of the *training* learners only. Reported
on the held-out test learners, per K: pooled AUC of the query answers (every answered item outside
the K of chapter 05's support draw) for the item-mean and 2PL-EAP baselines, the teacher and the
students, and the share of the teacher's AUC gain over item-mean each student keeps. Latency of one
learner update (K answers in, predictions of all items out) is timed on one CPU thread; the
amortised student also runs under torch.compile and, exported to ONNX, under onnxruntime.

    python -m course_lib.experiments.distillation --json results/distillation.json \
        --set save_model=results/distilled_swesat.pt
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from course_lib.experiments import common
from course_lib.models.amortized import GradientTeacher, build_student, distill
from course_lib.models.meta_irt import MetaIRTConfig, train_per_k_shot

__all__ = ["Config", "run", "main", "METHODS", "train_teacher", "RUNTIMES", "auc_rows", "show"]

UpdateFn = Callable[[Tensor, Tensor, Tensor], Tensor]   # items, answers, mask [B, n] -> P(correct) [B, n_items]


@dataclass(frozen=True)
class Config:
    """Settings of the distillation study (``--set name=value`` on the command line)."""

    ks: tuple[int, ...] = (1, 3, 5, 10, 20)
    methods: tuple[str, ...] = ("item_mean", "irt_2pl_eap", "teacher", "student_amortized", "student_small")
    seed: int = 0
    teacher_iterations: int = 200       # chapter 05's MetaConfig defaults
    teacher_warm_iterations: int = 60
    width: int = 32                     # amortised adapter: embedding width and MLP hidden units
    hidden: int = 64
    small_width: int = 8                # the smaller student
    small_hidden: int = 8
    distill_steps: int = 3000
    batch: int = 256
    lr: float = 1e-2
    latency_answers: int = 10           # answers per timed update
    latency_updates: int = 2000
    runtimes: tuple[str, ...] = ("eager", "compile", "onnxruntime")
    save_model: str = ""                # write the served model file (teacher + amortised student) here


def train_teacher(responses: Tensor, train: Tensor, ks: Sequence[int], config: Config, *, progress: bool,
                  device: torch.device) -> GradientTeacher:
    """Chapter 05's meta-IRT recipe (MAML, one model per K, warm-started), as a `GradientTeacher`."""
    meta = MetaIRTConfig(iterations=config.teacher_iterations, warm_iterations=config.teacher_warm_iterations)
    learners = train_per_k_shot("maml", responses, train, ks, meta, seed=config.seed, progress=progress,
                                device=device)
    states = {k: {n: v.detach().cpu() for n, v in m.model.state_dict().items()} for k, m in learners.items()}
    return GradientTeacher(states, alpha=meta.alpha, steps=meta.steps)


# ----------------------------------------------------------------------------- methods

@dataclass
class Context:
    """What every method may use: the data, the split, the config, the trained teacher."""

    responses: Tensor
    train: Tensor
    config: Config
    teacher: GradientTeacher
    progress: bool
    students: dict


METHODS: common.Registry[Callable[[Context], UpdateFn]] = common.Registry("method")


@METHODS.register("item_mean")
def _item_mean(ctx: Context) -> UpdateFn:
    p = torch.nanmean(ctx.responses[ctx.train], 0)
    return lambda items, answers, mask: p.expand(len(items), -1)


@METHODS.register("irt_2pl_eap")
def _irt(ctx: Context) -> UpdateFn:
    from course_lib.baselines.irt import eap_ability_batch, fit_2pl

    prm = fit_2pl(ctx.responses[ctx.train], seed=ctx.config.seed)

    def update(items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        theta, _ = eap_ability_batch(prm.a, prm.b, items, answers, mask > 0)
        return torch.sigmoid(prm.a * theta[:, None] + prm.d)
    return update


@METHODS.register("teacher")
def _teacher(ctx: Context) -> UpdateFn:
    return lambda items, answers, mask: torch.sigmoid(ctx.teacher.logits(items, answers, mask > 0))


def _student(kind: str, ctx: Context) -> UpdateFn:
    c, t = ctx.config, ctx.teacher
    last = t.learners[max(t.learners)].model
    options = (dict(width=c.width, hidden=c.hidden, seed=c.seed) if kind == "amortized"
               else dict(width=c.small_width, hidden=c.small_hidden, seed=c.seed))
    student = build_student(kind, t.n_items, t.dims, options)
    if kind == "amortized":  # start from the teacher's item bank and prior ability
        student.load_state_dict({"item_a": last.item_a, "item_d": last.item_d, "ability": last.ability},
                                strict=False)
    else:
        student.out.bias.data.copy_(last.item_d.detach())
    history = distill(student, t, ctx.responses, ctx.train, steps=c.distill_steps, batch=c.batch,
                      max_answers=max(c.ks), lr=c.lr, seed=c.seed, focus=sorted(c.ks),
                      progress=ctx.progress)
    student.eval().requires_grad_(False)
    ctx.students[kind] = {"model": student, "options": options, "history": history}
    return lambda items, answers, mask: torch.sigmoid(student(items, answers, mask))


METHODS.register("student_amortized")(lambda ctx: _student("amortized", ctx))
METHODS.register("student_small")(lambda ctx: _student("small", ctx))


# ----------------------------------------------------------------------------- latency

RUNTIMES: common.Registry[Callable[[torch.nn.Module, tuple], UpdateFn]] = common.Registry("runtime")
RUNTIMES.register("eager")(lambda student, example: lambda *x: torch.sigmoid(student(*x)))


@RUNTIMES.register("compile")
def _compiled(student: torch.nn.Module, example: tuple) -> UpdateFn:
    from course_lib.export import compile_student
    return compile_student(student, example)


@RUNTIMES.register("onnxruntime")
def _onnx(student: torch.nn.Module, example: tuple) -> UpdateFn:
    import tempfile

    from course_lib.export import OnnxStudent, export_onnx

    path = export_onnx(student, tempfile.mkdtemp() + "/student.onnx")
    session = OnnxStudent(path, threads=1)
    return lambda *x: torch.from_numpy(session(*x))


def _latency_inputs(responses: Tensor, test: Tensor, config: Config) -> list[tuple[Tensor, Tensor, Tensor]]:
    """One single-learner update per timed call: ``latency_answers`` answers of a test learner."""
    from course_lib.models.amortized import sample_answer_sets

    g = torch.Generator().manual_seed(config.seed + 7)
    items, answers, mask = sample_answer_sets(responses, test, config.latency_updates, config.latency_answers, g)
    return [(items[i:i + 1], answers[i:i + 1], mask[i:i + 1]) for i in range(len(items))]


# ----------------------------------------------------------------------------- run

def auc_rows(update: UpdateFn, name: str, responses: Tensor, test: Tensor, config: Config) -> list[dict]:
    """Pooled query AUC of ``update`` on the ``test`` learners for every K of ``config`` (one row each).

    Chapter 05's evaluation: K answered items drawn with seed + 1 (nested in K) are the support,
    every other answered item is a query. Derived in chapter 05, section 6; used in chapter 10.
    """
    from course_lib.metrics import auc
    from course_lib.tasks import learner_tasks

    rows = []
    for k in config.ks:  # chapter 05's evaluation draw: seed + 1, nested supports
        b = learner_tasks(responses, k, test, generator=torch.Generator().manual_seed(config.seed + 1))
        with torch.no_grad():
            prob = update(b.x_support, b.y_support, torch.ones(b.x_support.shape))
        p = prob.gather(1, b.x_query)[b.query_mask].numpy()
        y = b.y_query[b.query_mask].numpy()
        rows.append({"method": name, "k": k, "auc": auc(y, p), "n_learners": len(test), "n_answers": len(y)})
    return rows


def _gain_kept(rows: list[dict]) -> None:
    """Add ``gain_kept`` = (AUC − AUC item-mean) / (AUC teacher − AUC item-mean) to every row, per K."""
    by = {(r["method"], r["k"]): r["auc"] for r in rows}
    for r in rows:
        base, teacher = by.get(("item_mean", r["k"])), by.get(("teacher", r["k"]))
        r["gain_kept"] = (None if base is None or teacher is None or teacher <= base
                          else (r["auc"] - base) / (teacher - base))


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None
        ) -> common.Result:
    """Train the teacher and the students, score them per K on held-out learners, time one update.

    Returns a `common.Result` whose rows are (method, k, auc, gain_kept, n_learners, n_answers) and
    whose details hold the distillation loss histories and, under ``timings``, the update latency
    of every method (p50/p99/mean ms, one learner, one thread), the amortised student's runtimes
    (eager, torch.compile, onnxruntime) and the training times. Derived in chapter 10.
    """
    from course_lib.data.responses import split_learners
    from course_lib.data.swesat import load_swesat
    from course_lib.device import cpu_threads, get_device
    from course_lib.export import time_updates

    methods, runtimes = METHODS.check(config.methods), RUNTIMES.check(config.runtimes)
    if not config.ks or min(config.ks) < 1:
        raise ValueError(f"ks must be positive numbers of answers, got {config.ks}")
    device = get_device() if device is None else torch.device(device)
    with common.stopwatch() as elapsed, cpu_threads(1):
        r = load_swesat().responses
        split = split_learners(r.shape[0], (0.7, 0.1, 0.2), seed=config.seed)   # chapter 05's split
        train, test = split["train"], split["test"]
        timings: dict = {"train_s": {}, "latency_ms": {}, "runtime_ms": {}}
        t0 = elapsed()
        teacher = train_teacher(r, train, sorted(config.ks), config, progress=progress, device=device)
        timings["train_s"]["teacher_meta_training"] = elapsed() - t0
        ctx = Context(r, train, config, teacher, progress, {})
        inputs = _latency_inputs(r, test, config)
        rows = []
        for name in methods:
            t0 = elapsed()
            update = METHODS[name](ctx)
            timings["train_s"][name] = elapsed() - t0
            rows += auc_rows(update, name, r, test, config)
            with torch.no_grad():
                timings["latency_ms"][name] = time_updates(update, inputs)
        _gain_kept(rows)
        if "amortized" in ctx.students:
            student = ctx.students["amortized"]["model"]
            for rt in runtimes:
                with torch.no_grad():
                    timings["runtime_ms"][rt] = time_updates(RUNTIMES[rt](student, inputs[0]), inputs)
        if config.save_model and "amortized" in ctx.students:
            from course_lib.serving.model import save_bundle
            s = ctx.students["amortized"]
            save_bundle(config.save_model, teacher, s["model"], "amortized", s["options"])
    details = {"history": {k: v["history"] for k, v in ctx.students.items()},
               "n_params": {k: sum(p.numel() for p in v["model"].parameters()) for k, v in ctx.students.items()},
               "split": {k: len(v) for k, v in split.items()}, "timings": timings}
    return common.Result("distillation", rows, asdict(config), elapsed(), details)


def show(result: common.Result) -> str:
    """AUC per method × K, the share of the teacher's gain kept, and update latency per method."""
    import pandas as pd

    auc = result.table(index="method", columns="k", values="auc").round(4)
    kept = result.table(index="method", columns="k", values="gain_kept").round(3)
    lat = pd.DataFrame(result.details["timings"]["latency_ms"]).T.round(3)
    rt = pd.DataFrame(result.details["timings"].get("runtime_ms", {})).T.round(3)
    return (f"AUC on held-out learners\n{auc}\n\nshare of the teacher's AUC gain over item-mean\n{kept}"
            f"\n\nlatency of one learner update (ms, 1 thread)\n{lat}\n\namortised student runtimes (ms)\n{rt}")


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.distillation [--set name=value ...] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=show)


if __name__ == "__main__":
    main()
