"""Learner-level differential privacy on SweSAT cold start: held-out AUC against ε.

Derived in chapter 09, section 2. Chapter 05's split by learner (70/10/20); for every target
ε in ``epsilons`` (``inf``: not private) and every seed, `train_private_meta_irt` meta-trains
MAML on `MetaIRT` for ``iterations`` DP-SGD steps (Poisson sampling q = meta_batch / N, per-learner
clipping to ``clip``, σ calibrated with Opacus's RDP accountant, δ = 1 / N); the held-out learners
are then adapted on K answers and scored on all their other answers (AUC with learner-bootstrap CIs).
Every row reports the ε actually spent (Opacus) next to the target.

    python -m course_lib.experiments.privacy --json results/privacy.json
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from course_lib import metrics
from course_lib.algorithms.private import check_epsilon
from course_lib.data.responses import load_study_data, split_learners
from course_lib.experiments import common
from course_lib.models.meta_irt import MetaIRTConfig, meta_predict
from course_lib.models.private_meta_irt import train_private_meta_irt
from course_lib.tasks import learner_tasks, query_answers

__all__ = ["Config", "run", "main", "summary"]


@dataclass(frozen=True)
class Config:
    """Settings: target ``epsilons`` (inf = non-private), ``clip`` C, DP-SGD ``iterations``,
    ``meta_batch`` (expected learners per step), evaluation ``k_shots``, ``seeds`` (training runs per ε)."""

    dataset: str = "swesat"
    epsilons: tuple[float, ...] = (1.0, 3.0, 8.0, math.inf)
    clip: float = 0.1
    iterations: int = 300
    meta_batch: int = 64
    k_range: tuple[int, ...] = (1, 20)
    k_shots: tuple[int, ...] = (5, 10)
    seeds: tuple[int, ...] = (0, 1)
    n_boot: int = 200
    threads: int = 1

    def __post_init__(self) -> None:
        for eps in self.epsilons:
            check_epsilon(eps)
        if not self.clip > 0 or not self.iterations > 0 or not self.meta_batch > 0:
            raise ValueError("clip, iterations and meta_batch must be > 0")


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None) -> common.Result:
    """One row per (target ε, seed, K): auc(_lo/_hi), logloss, epsilon (spent), delta, noise_multiplier,
    clip, sample_rate, iterations. Details: `summary` (mean over seeds), timings. CPU. Chapter 09, section 2."""
    from course_lib.device import cpu_threads

    meta = dataclasses.replace(MetaIRTConfig(), meta_batch=config.meta_batch)
    with common.stopwatch() as elapsed, cpu_threads(config.threads or None):
        r = load_study_data(config.dataset, 0).responses
        split = split_learners(r.shape[0], (0.7, 0.1, 0.2), seed=0)
        tests = {k: learner_tasks(r, k, split["test"], generator=torch.Generator().manual_seed(1))
                 for k in config.k_shots}
        rows, timings = [], {}
        for eps in config.epsilons:
            for seed in config.seeds:
                with common.stopwatch() as t:
                    maml, report = train_private_meta_irt(r, split["train"], tuple(config.k_range), eps,
                                                          clip=config.clip, config=meta, iterations=config.iterations,
                                                          seed=seed, progress=progress)
                timings[f"{eps:g}/{seed}"] = t()
                for k, batch in tests.items():
                    y, p, learner = query_answers(batch, meta_predict(maml, batch))
                    m = metrics.pooled_bootstrap(y, p, learner, n_boot=config.n_boot, seed=0, score_bins=4096)
                    rows.append({"target_epsilon": eps, "seed": seed, "k_shot": k, **m,
                                 **{key: report[key] for key in ("epsilon", "delta", "noise_multiplier", "clip",
                                                                 "sample_rate", "iterations")}})
    result = common.Result("privacy", rows, dataclasses.asdict(config), elapsed(), {"timings": timings})
    result.details["summary"] = summary(result)
    return result


def summary(result: common.Result) -> list[dict]:
    """Mean AUC over seeds (and its range) per target ε and K, with the ε spent: what the figure plots."""
    df = result.table()
    df["target_epsilon"] = df["target_epsilon"].fillna(math.inf)  # JSON stores inf as null
    out = []
    for (eps, k), g in df.groupby(["target_epsilon", "k_shot"], sort=True):
        out.append({"target_epsilon": float(eps), "k_shot": int(k), "auc_mean": float(g["auc"].mean()),
                    "auc_min": float(g["auc"].min()), "auc_max": float(g["auc"].max()),
                    "epsilon": _spent(g["epsilon"]),
                    "noise_multiplier": float(g["noise_multiplier"].iloc[0]), "seeds": int(len(g))})
    return out


def _spent(values) -> float:
    """The largest ε spent over seeds; ∞ (stored as null in JSON) when any run was not private."""
    eps = values.astype(float).to_numpy()
    return math.inf if np.isnan(eps).any() or np.isinf(eps).any() else float(eps.max())


def _show(result: common.Result) -> str:
    cols = ["target_epsilon", "seed", "k_shot", "auc", "auc_lo", "auc_hi", "logloss", "epsilon", "noise_multiplier"]
    return result.table()[cols].round(4).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.privacy [--set epsilons=1,3,8,inf] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
