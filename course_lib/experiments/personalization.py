"""Four ways to serve a new learner, against the Bayes-optimal ceiling (the study behind chapter 01).

Derived in chapter 01. A learner is a task: K of their answers are the support set 𝒟ᵢˢ, further
answers the query set 𝒟ᵢ^q. On synthetic learners with known parameters (``data.synthetic_learners``)
the arms of `ARMS` serve K = 1, 2, 4, ... answers of a *new* learner with ``models.learner_model``:
``global`` (θ_pre for everyone), ``scratch`` (from θ = 0), ``fine_tune`` (transfer learning,
``baselines.fine_tuning``), ``maml`` (θ meta-trained so that a few steps on K answers work) and
``bayes`` (the posterior predictive under the true model: the ceiling); ``oracle`` rows score the
true probabilities. Command line (the notebook calls the same `run`):
``python -m course_lib.experiments.personalization --json FILE``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from course_lib.algorithms.functional import Params
from course_lib.baselines.fine_tuning import (fine_tune_per_k, fine_tune_predict, objective_slice,
                                               predict_tasks, pretrain)
from course_lib.data.responses import split_learners
from course_lib.data.synthetic_learners import SyntheticLearners, make_learners
from course_lib.device import get_device
from course_lib.experiments import common
from course_lib.metrics import abs_correlation, auc, log_loss, mean_ci, per_learner_metrics, query_log_loss
from course_lib.models.learner_model import ADAPT, LearnerModel, fit_per_learner_heads, meta_train
from course_lib.tasks import TaskBatch, fixed_query_tasks, split_by_interaction

__all__ = ["Config", "ARMS", "METHODS", "run", "main"]


@dataclass(frozen=True)
class Config:
    """Settings of the study; the defaults are the chapter's. K values are ``k_shots``."""

    n_learners: int = 1500
    n_items: int = 80
    missing_rate: float = 0.1
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    k_shots: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    n_query: int = 16
    embed_dim: int = 1
    pretrain_steps: int = 300
    pretrain_lr: float = 0.05
    alpha_grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    steps_grid: tuple[int, ...] = (1, 2, 5)
    maml_iterations: int = 600
    maml_meta_batch: int = 32
    maml_beta: float = 0.03
    grid_points: int = 21
    leakage_steps: int = 300
    n_examples: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.k_shots or min(self.k_shots) < 1:
            raise ValueError(f"k_shots must be positive ints, got {self.k_shots}")
        if max(self.k_shots) + self.n_query > self.n_items * (1 - self.missing_rate) - 6:
            raise ValueError(f"max K = {max(self.k_shots)} plus n_query = {self.n_query} is too close to the "
                             f"~{self.n_items * (1 - self.missing_rate):.0f} answers a learner gives; "
                             "add items, lower K or n_query")
        if not self.alpha_grid or min(self.alpha_grid) <= 0 or not self.steps_grid or min(self.steps_grid) < 1:
            raise ValueError(f"alpha_grid must hold step sizes > 0 and steps_grid step counts >= 1, got "
                             f"{self.alpha_grid} and {self.steps_grid}")
        if min(self.maml_iterations, self.pretrain_steps, self.leakage_steps, self.maml_meta_batch) < 1:
            raise ValueError("maml_iterations, pretrain_steps, leakage_steps and maml_meta_batch must be >= 1")


@dataclass
class Setup:
    """What every arm needs: the learners, the split by learner, the tasks by K, the pretrained model."""

    cfg: Config
    pop: SyntheticLearners
    split: dict[str, Tensor]
    val_tasks: dict[int, TaskBatch]
    test_tasks: dict[int, TaskBatch]
    model: LearnerModel
    theta_pre: Params
    pretrain_history: dict
    device: torch.device
    progress: bool


@dataclass
class Arm:
    """One method's output: test predictions ``{K: [learners, n_query]}``, its (α, steps) per K, its θ."""

    preds: dict[int, Tensor] = field(default_factory=dict)
    hyper: dict[int, dict] = field(default_factory=dict)
    theta: Params | None = None
    history: dict | None = None


#: The arms, run in this order; an arm is ``fn(setup, arms_so_far) -> Arm``.
ARMS: common.Registry = common.Registry("method")


@ARMS.register("global")
def _global(s: Setup, done: dict[str, Arm]) -> Arm:
    """(1) θ_pre for everyone, no adaptation."""
    arm = Arm()
    for k_shot, test in s.test_tasks.items():
        theta = {name: v.detach()[None].expand(test.n_tasks, *v.shape) for name, v in s.theta_pre.items()}
        arm.preds[k_shot] = predict_tasks(s.model, theta, test.x_query)
    return arm


@ARMS.register("scratch")
def _scratch(s: Setup, done: dict[str, Arm]) -> Arm:
    """(2) A model per learner from θ = 0, (α, steps) tuned on the validation learners."""
    theta_zero = {name: torch.zeros_like(v) for name, v in s.theta_pre.items()}
    return Arm(*fine_tune_per_k(s.model, theta_zero, s.val_tasks, s.test_tasks, **_grids(s), desc="scratch"))


@ARMS.register("fine_tune")
def _fine_tune(s: Setup, done: dict[str, Arm]) -> Arm:
    """(3) Transfer learning: fine-tune θ_pre, (α, steps) tuned on the validation learners."""
    return Arm(*fine_tune_per_k(s.model, s.theta_pre, s.val_tasks, s.test_tasks, **_grids(s), desc="fine_tune"))


def _grids(s: Setup) -> dict:
    """The tuning grids and the adapted parameters, as keyword arguments of `fine_tune_per_k`."""
    return dict(alpha_grid=s.cfg.alpha_grid, steps_grid=s.cfg.steps_grid, adapt=ADAPT, progress=s.progress)


@ARMS.register("maml")
def _maml(s: Setup, done: dict[str, Arm]) -> Arm:
    """(4) MAML with fine-tuning's inner loop for each K (same α, same steps), warm-started at θ_pre."""
    cfg, inner = s.cfg, {k_shot: (h["alpha"], h["steps"]) for k_shot, h in done["fine_tune"].hyper.items()}
    meta_model = copy.deepcopy(s.model)  # warm start at θ_pre
    history = meta_train(meta_model, s.pop.responses, s.split["train"], inner, iterations=cfg.maml_iterations,
                         meta_batch=cfg.maml_meta_batch, n_query=cfg.n_query, beta=cfg.maml_beta, adapt=ADAPT,
                         seed=cfg.seed, progress=s.progress)
    theta = {name: v.detach().clone() for name, v in meta_model.named_parameters()}
    arm = Arm(theta=theta, history=history)
    for k_shot, (alpha, steps) in inner.items():  # at test time, the very code of fine-tuning: only θ differs
        val, test = s.val_tasks[k_shot], s.test_tasks[k_shot]
        pred_val, arm.preds[k_shot] = (fine_tune_predict(s.model, theta, batch, alpha=alpha, steps=steps, adapt=ADAPT)
                                       for batch in (val, test))
        arm.hyper[k_shot] = {"alpha": alpha, "steps": steps,
                             "validation_log_loss": query_log_loss(pred_val, val.y_query, val.query_mask)}
    return arm


@ARMS.register("bayes")
def _bayes(s: Setup, done: dict[str, Arm]) -> Arm:
    """(5) The Bayes-optimal posterior predictive, with the true parameters."""
    arm = Arm()
    for k_shot, test in tqdm(s.test_tasks.items(), desc="Bayes ceiling per K", disable=not s.progress):
        arm.preds[k_shot] = s.pop.posterior_predictive(test.x_support, test.y_support, test.x_query,
                                                       grid_points=s.cfg.grid_points).to(s.device)
    return arm


METHODS = ARMS.names()


def run(config: Config | None = None, *, progress: bool = True,
        device: torch.device | str | None = None) -> common.Result:
    """Run the chapter 01 study: one row per method (`METHODS` and ``oracle``) and K.

    Rows: ``method``, ``k_shot``, mean and 95 % CI over test learners (``_lo``, ``_hi``) of ``log_loss``,
    ``accuracy``, ``auc``, ``rmse_to_truth``; ``alpha``, ``steps``, ``validation_log_loss`` of the arms
    that adapt. Details: ``population``, ``split``, ``per_learner_log_loss`` {method: {K: [...]}},
    ``histories``, ``theta``, ``leakage`` (split by interaction vs by learner), ``objective_slice``,
    ``examples``, ``device``, ``timings``. Everything follows from ``config.seed`` (s): learners and
    split ``seed=s``, validation / test tasks ``s+1`` / ``s+2``, the interaction split ``s+3``.
    Derived in chapter 01, section 3.
    """
    cfg = config or Config()
    device = torch.device(device) if device is not None else get_device()
    timings: dict[str, float] = {}
    with common.stopwatch() as wall:
        s = _timed(timings, "data_and_pretrain", _setup, cfg, device, progress)
        arms: dict[str, Arm] = {}
        for name in ARMS:
            arms[name] = _timed(timings, name, ARMS[name], s, arms)
        rows, per_learner, truth = _score(s, arms)
        leakage = _timed(timings, "leakage", _leakage, s)
        details = _details(s, arms, truth) | {"per_learner_log_loss": per_learner, "leakage": leakage,
                                              "device": str(device), "timings": timings}
        return common.Result("personalization", rows, dataclasses.asdict(cfg), wall(), details)


def _timed(timings: dict[str, float], name: str, fn, *args):
    """``fn(*args)``, its wall time stored in ``timings[name]``."""
    with common.stopwatch() as elapsed:
        out = fn(*args)
    timings[name] = elapsed()
    return out


def _setup(cfg: Config, device: torch.device, progress: bool) -> Setup:
    """The learners, the split by learner, fixed query tasks per K, and the pretrained model θ_pre."""
    pop = make_learners(cfg.n_learners, cfg.n_items, missing_rate=cfg.missing_rate, seed=cfg.seed)
    split = split_learners(pop.n_learners, cfg.fractions, seed=cfg.seed)
    val_tasks, test_tasks = ({k_shot: t.to(device) for k_shot, t in fixed_query_tasks(
        pop.responses, split[name], cfg.k_shots, cfg.n_query, seed=cfg.seed + offset).items()}
        for name, offset in (("validation", 1), ("test", 2)))
    model = LearnerModel(pop.public_features, cfg.embed_dim, seed=cfg.seed).to(device)
    history = pretrain(model, pop.responses, split["train"], steps=cfg.pretrain_steps, lr=cfg.pretrain_lr,
                       progress=progress)
    theta_pre = {name: v.detach().clone() for name, v in model.named_parameters()}
    return Setup(cfg, pop, split, val_tasks, test_tasks, model, theta_pre, history, device, progress)


def _score(s: Setup, arms: dict[str, Arm]) -> tuple[list[dict], dict, Tensor]:
    """Rows (mean and 95 % CI over test learners per method and K), per-learner log-loss, the truth."""
    truth = s.pop.prob[s.split["test"]].float().gather(1, s.test_tasks[s.cfg.k_shots[0]].x_query.cpu())
    rows, per_learner = [], {}
    for method in (*arms, "oracle"):
        for k_shot in s.cfg.k_shots:
            pred = truth if method == "oracle" else arms[method].preds[k_shot]
            per = per_learner_metrics(pred, s.test_tasks[k_shot].y_query, truth)
            row = {"method": method, "k_shot": k_shot}
            for name, values in per.items():
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_ci(values)
            hyper = arms[method].hyper.get(k_shot, {}) if method in arms else {}
            rows.append(row | {"alpha": None, "steps": None, "validation_log_loss": None} | hyper)
            per_learner.setdefault(method, {})[k_shot] = per["log_loss"].tolist()
    return rows, per_learner, truth


def _details(s: Setup, arms: dict[str, Arm], truth: Tensor) -> dict:
    """The learners, the split, the training curves, both θ, the objective slice, example predictions."""
    ks, test, split, maml = s.cfg.k_shots, s.test_tasks, s.split, arms["maml"]
    n_ex = min(s.cfg.n_examples, len(split["test"]))
    k_slice = 4 if 4 in ks else ks[0]
    head_names = [f"w_{n}" for n in ("algebra", "reading", "difficulty")][: s.pop.public_features.shape[1]]
    return {
        "population": s.pop.summary(),
        "split": {name: len(ix) for name, ix in split.items()}
                 | {"learners_in_two_splits": len(set(split["train"].tolist()) & set(split["test"].tolist()))},
        "histories": {"pretrain": s.pretrain_history, "maml": maml.history},
        "theta": {"head_names": head_names + [f"w_embed{d}" for d in range(s.cfg.embed_dim)],
                  **{name: {n: v.cpu().tolist() for n, v in th.items()}
                     for name, th in (("pretrain", s.theta_pre), ("maml", maml.theta))},
                  "embedding_vs_true_loading": {name: abs_correlation(th["embed.weight"][:, 0], s.pop.loading)
                                                for name, th in (("pretrain", s.theta_pre), ("maml", maml.theta))}},
        "objective_slice": objective_slice(s.model, s.theta_pre, maml.theta, s.val_tasks[k_slice], adapt=ADAPT,
                                           alpha=maml.hyper[k_slice]["alpha"], steps=maml.hyper[k_slice]["steps"]),
        "examples": {"learner": split["test"][:n_ex].tolist(),
                     "true_params": s.pop.learner_params[split["test"][:n_ex]].tolist(),
                     "query_items": test[ks[0]].x_query[:n_ex].tolist(),
                     "query_answers": test[ks[0]].y_query[:n_ex].tolist(),
                     "truth": truth[:n_ex].tolist(),
                     "support_items": {k_shot: test[k_shot].x_support[:n_ex].tolist() for k_shot in ks},
                     "support_answers": {k_shot: test[k_shot].y_support[:n_ex].tolist() for k_shot in ks},
                     "pred": {m: {k_shot: arm.preds[k_shot][:n_ex].cpu().tolist() for k_shot in ks}
                              for m, arm in arms.items()}},
    }


def _leakage(s: Setup) -> dict:
    """The mistake, measured: `fit_per_learner_heads` on 80 % of the answers of *every* train and test
    learner (a split by interaction), scored on the other 20 % of the test learners'. Chapter 01, section 5."""
    pop, split, cfg, device, rows_train = s.pop, s.split, s.cfg, s.device, s.split["train"].tolist()
    train_mask, test_mask = split_by_interaction(pop.responses, 0.2, seed=cfg.seed + 3)
    rows = torch.cat([split["train"], split["test"]]).sort().values
    y = pop.responses[rows].nan_to_num(0.0).to(device)
    w_train, w_test = train_mask[rows].float().to(device), test_mask[rows].float().to(device)
    model = LearnerModel(pop.public_features, cfg.embed_dim, seed=cfg.seed).to(device)
    p = fit_per_learner_heads(model, y, w_train, steps=cfg.leakage_steps, progress=s.progress)
    is_test = torch.isin(rows, split["test"])
    groups = [(y[i][w_test[i] > 0].cpu().numpy(), p[i][w_test[i] > 0].cpu().numpy())
              for i in torch.nonzero(is_test).flatten().tolist() if w_test[i].sum() > 0]
    return {"interaction_split": {
                "log_loss": list(mean_ci([log_loss(a, b) for a, b in groups])),
                "auc": list(mean_ci([auc(a, b) for a, b in groups])),
                "test_learners_seen_in_training": int((w_train[is_test].sum(1) > 0).sum()),
                "test_learners": int(is_test.sum()),
                "mean_training_answers_per_test_learner": float(w_train[is_test].sum(1).mean())},
            "learner_split": {"test_learners_seen_in_training": len(set(split["test"].tolist()) & set(rows_train)),
                              "test_learners": len(split["test"])}}


def _show(res: common.Result) -> str:
    """The command line's table: query log-loss by method and K, and the leaky split's score."""
    t = res.table().assign(K=lambda d: [f"K={k_shot}" for k_shot in d.k_shot], cell=lambda d: [
        f"{m:.4f} ±{(hi - lo) / 2:.3f}" for m, lo, hi in zip(d.log_loss, d.log_loss_lo, d.log_loss_hi)])
    leak = res.details["leakage"]["interaction_split"]
    return ("query log-loss, mean over test learners [95% CI half-width], by K = number of the learner's answers\n"
            + t.pivot(index="method", columns="K", values="cell").loc[[*METHODS, "oracle"], t.K.unique()].to_string()
            + f"\nsplit by interaction (the mistake): log-loss {leak['log_loss'][0]:.4f}, every one of the "
              f"{leak['test_learners']} 'test' learners seen in training")


def main(argv: list[str] | None = None) -> common.Result:
    """Command line: run the study, print the log-loss table, optionally write the JSON."""
    return common.cli(run, Config, argv, description=__doc__.splitlines()[0], show=_show)


if __name__ == "__main__":
    main()
