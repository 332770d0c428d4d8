"""Federated meta-learning on SweSAT cold start: FedAvg + fine-tuning, Per-FedAvg, federated Reptile.

Derived in chapter 09, section 1. Chapter 05's protocol: learners split 70/10/20 by learner; the
training learners are dealt to ``n_clients`` non-IID clients (``split``: by ability quantile,
by section profile, or at random); each method trains `MetaIRT` for ``fed.rounds`` rounds of
``fed.local_steps`` local steps per client (`course_lib.federated.core`). Centralised MAML (all
training answers in one place, the same number of learner-gradients, K drawn from the same range)
is the upper reference. Every model is evaluated the same way: the held-out learner's ability is
adapted on K answers with ``meta.steps`` gradient steps whose size α is picked per method on the
validation learners (so FedAvg's fine-tuning gets a tuned step), then AUC on all their other
answers, with learner-bootstrap CIs; plus the paired per-learner log-loss difference against
centralised MAML, rounds, and bytes sent.

    python -m course_lib.experiments.federated --json results/federated.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from course_lib import metrics
from course_lib.algorithms import MAML
from course_lib.data.responses import load_study_data, split_learners
from course_lib.experiments import common
from course_lib.federated.core import FedConfig, payload_bytes, run_federated, split_clients
from course_lib.models.meta_irt import MetaIRT, meta_predict, train_meta_irt
from course_lib.tasks import TaskBatch, learner_tasks, query_answers

__all__ = ["Config", "run", "main", "METHODS", "adapter", "score"]

METHODS = ("fedavg", "per_fedavg", "reptile", "centralised_maml")
REFERENCE = "centralised_maml"
TEST_ALPHAS = (0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Config:
    """Settings: ``n_clients`` clients split by ``split`` (ability | section | random); ``rounds``,
    ``local_steps`` (E) and ``local_batch`` of federated training; ``k_shots`` the evaluation K;
    ``methods`` a subset of `METHODS`."""

    dataset: str = "swesat"
    n_clients: int = 5
    split: str = "ability"
    k_shots: tuple[int, ...] = (1, 5, 10, 20)
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    n_boot: int = 200
    rounds: int = 25
    local_steps: int = 10
    local_batch: int = 16
    threads: int = 1

    @property
    def fed(self) -> FedConfig:
        """The `FedConfig` these settings describe (chapter 05's `MetaIRTConfig` for α, steps, dims)."""
        return FedConfig(rounds=self.rounds, local_steps=self.local_steps, local_batch=self.local_batch)


def adapter(theta: dict, n_items: int, alpha: float, steps: int) -> MAML:
    """θ wrapped for test-time adaptation: the ability takes ``steps`` steps of size α (chapter 09)."""
    model = MetaIRT(n_items, theta["item_a"].shape[1])
    model.load_state_dict(theta)
    return MAML(model, loss="bce", alpha=alpha, steps=steps, adapt=["ability"])


def _pick_alpha(theta: dict, n_items: int, steps: int, val: TaskBatch) -> float:
    """The test-time step α with the lowest validation log loss (one K, every method alike)."""
    losses = {a: metrics.log_loss(*query_answers(val, meta_predict(adapter(theta, n_items, a, steps), val))[:2])
              for a in TEST_ALPHAS}
    return min(losses, key=losses.get)


def score(method: str, theta: dict, alpha: float, steps: int, tests: dict[int, TaskBatch], n_boot: int,
          seed: int) -> tuple[list[dict], dict[int, np.ndarray]]:
    """Rows (AUC with CIs, log loss, ECE) per K and each test learner's mean log loss per K."""
    rows, per_learner = [], {}
    n_items = theta["item_d"].shape[0]
    for k_shot, batch in tests.items():
        y, p, learner = query_answers(batch, meta_predict(adapter(theta, n_items, alpha, steps), batch))
        m = metrics.pooled_bootstrap(y, p, learner, n_boot=n_boot, seed=seed, score_bins=4096)
        rows.append({"method": method, "k_shot": k_shot, **m, "ece": metrics.expected_calibration_error(y, p),
                     "test_alpha": alpha, "n_learners": int(batch.n_tasks)})
        nll = metrics.binary_cross_entropy(y, p)
        per_learner[k_shot] = np.bincount(learner, weights=nll) / np.bincount(learner)
    return rows, per_learner


def _train(method: str, r: torch.Tensor, clients: list, train: torch.Tensor, config: Config,
           progress: bool) -> tuple[dict, dict]:
    """θ of one method and its communication log (centralised: no rounds, no bytes)."""
    fed = config.fed
    if method == REFERENCE:
        n_grads = fed.rounds * fed.local_steps * fed.local_batch * len(clients)
        iterations = max(n_grads // fed.meta.meta_batch, 1)
        learner = train_meta_irt("maml", r, train, fed.k_range, fed.meta, iterations=iterations, seed=config.seed,
                                 progress=progress)
        theta = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        return theta, {"rounds": 0, "bytes_sent": 0, "bytes_per_round": 0, "iterations": iterations}
    from tqdm.auto import tqdm

    bar = tqdm(total=fed.rounds, desc=method, disable=not progress)
    theta, log = run_federated(method, r, clients, fed, seed=config.seed, on_round=lambda i, th: bar.update())
    bar.close()
    return theta, log


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None) -> common.Result:
    """Train every method in ``config.methods`` and score it on the held-out learners (CPU; tiny models).

    Rows: method, k_shot, auc(_lo/_hi), logloss(_lo/_hi), ece, test_alpha, n_learners, rounds,
    bytes_sent. Details: clients' sizes, ``paired`` log-loss differences against centralised MAML,
    ``theta`` (each method's trained θ and its test-time α, a few hundred numbers), timings. Derived in chapter 09, section 1.
    """
    from course_lib.device import cpu_threads

    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    with common.stopwatch() as elapsed, cpu_threads(config.threads or None):
        data = load_study_data(config.dataset, config.seed)
        r = data.responses
        split = split_learners(r.shape[0], (0.7, 0.1, 0.2), seed=config.seed)
        clients = split_clients(r, split["train"], config.n_clients, config.split, data.groups)
        tests = {k: learner_tasks(r, k, split["test"], generator=torch.Generator().manual_seed(config.seed + 1))
                 for k in config.k_shots}
        val = learner_tasks(r, 5, split["validation"], generator=torch.Generator().manual_seed(config.seed + 2))
        rows, per_learner, timings, logs, thetas = [], {}, {}, {}, {}
        steps = config.fed.meta.steps
        for method in config.methods:
            with common.stopwatch() as t:
                theta, logs[method] = _train(method, r, clients, split["train"], config, progress)
                alpha = _pick_alpha(theta, r.shape[1], steps, val)
                thetas[method] = {"alpha": alpha, **theta}
                method_rows, per_learner[method] = score(method, theta, alpha, steps, tests, config.n_boot,
                                                         config.seed)
            timings[method] = t()
            rows += [{**row, "rounds": logs[method]["rounds"], "bytes_sent": logs[method]["bytes_sent"]}
                     for row in method_rows]
        paired = _paired(per_learner, config.k_shots)
    details = {"clients": [len(c) for c in clients], "paired": paired, "logs": logs, "timings": timings,
               "payload_bytes": payload_bytes(theta), "theta": thetas}
    return common.Result("federated", rows, dataclasses.asdict(config), elapsed(), details)


def _paired(per_learner: dict, k_shots: Sequence[int]) -> list[dict]:
    """Per-learner log-loss difference (method − centralised MAML): mean and 95 % CI per K."""
    if REFERENCE not in per_learner:
        return []
    out = []
    for method, per_k in per_learner.items():
        if method == REFERENCE:
            continue
        for k in k_shots:
            mean, lo, hi = metrics.mean_ci(per_k[k] - per_learner[REFERENCE][k])
            out.append({"method": method, "versus": REFERENCE, "k_shot": k, "logloss_diff": mean,
                        "logloss_diff_lo": lo, "logloss_diff_hi": hi})
    return out


def _show(result: common.Result) -> str:
    cols = ["method", "k_shot", "auc", "auc_lo", "auc_hi", "logloss", "ece", "test_alpha", "rounds", "bytes_sent"]
    return result.table()[cols].round(4).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.federated [--set n_clients=5] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
