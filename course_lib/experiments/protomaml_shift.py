"""ProtoNet, MAML and ProtoMAML under domain shift: meta-train on one SweSAT section, adapt on the other.

Derived in chapter 03, section 8. SweSAT's two sections are two separate samples of 5000 test
takers (`course_lib.data.swesat`); each section is split by learner into train / validation / test
(`split_learners`). A **task** is one test taker: "which of the items I answered did I get right?"
as a 2-way episode (`course_lib.tasks.learner_episodes`): the support set is K of the learner's
wrong answers and K of their right answers (K per class, as in every N-way K-shot episode), the
query set every other item they answered, the same for every K. An item is described by two
features computed on the section's *training* learners (`course_lib.data.responses.item_statistics`:
the logit of the share correct and the item-rest correlation), which mean the same on either
section, so a network trained on quantitative items can read verbal ones.

Conditions: the meta-learners are meta-trained on the training learners of a *source* section and
evaluated on the test learners of a *target* section: in-domain (source = target) and shifted
(source ≠ target). The non-meta baselines use no source at all: ``irt_2pl_eap`` (2PL fitted on the
target section's training learners, the learner's ability by EAP from the 2K support answers, the
per-section IRT of chapter 05) and ``item_easiness`` (rank the items by their share correct, no
adaptation). The meta-learners see the target section's training learners only through the two
item features; the 2PL sees all their answers, so the comparison is, if anything, tilted towards it.

Metric: per learner, the AUC of the query items ranked by the predicted chance of "right"
(`course_lib.metrics.row_auc`), averaged over test learners, with a 95 % bootstrap CI resampling
learners; ``details["paired"]``: ProtoMAML minus each other method on the same learners (paired
bootstrap CIs); ``details["shift_cost"]``: each meta-learner trained on the other section minus itself
trained on the target section, same learners. Accuracy (argmax) is reported too, but with a balanced
support it is not calibrated to the learner's own mix of right and wrong: the AUC is the headline.

    python -m course_lib.experiments.protomaml_shift --json results/protomaml_shift.json
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from course_lib import metrics
from course_lib.algorithms import MAML
from course_lib.algorithms.protomaml import ProtoMAML
from course_lib.algorithms.protonet import ProtoNet
from course_lib.baselines.irt import eap_predict, fit_2pl
from course_lib.data.responses import item_statistics, split_learners
from course_lib.device import cpu_threads, get_device
from course_lib.experiments.common import Registry, Result, cli, stopwatch
from course_lib.tasks import TaskBatch, episode_learners, learner_episodes, permutation

__all__ = ["Config", "Section", "run", "main", "METHODS", "META_METHODS", "embedding_net", "load_sections"]

SECTIONS = ("quantitative", "verbal")
META_METHODS = ("protonet", "maml", "protomaml")


@dataclass(frozen=True)
class Config:
    """``k_train`` / ``k_shots``: K per class in meta-training / test episodes; ``n_test``: test learners
    per section (seeded, each with >= max(K) + 1 right and wrong answers, so the query holds both);
    ``steps``, ``alpha``, ``first_order``: MAML's and ProtoMAML's inner loop; ``beta``: Adam's outer step."""

    sections: tuple[str, ...] = SECTIONS
    methods: tuple[str, ...] = ("item_easiness", "irt_2pl_eap", "protonet", "maml", "protomaml")
    k_shots: tuple[int, ...] = (1, 5, 10)
    k_train: int = 5
    n_test: int = 600
    iterations: int = 1500
    meta_batch: int = 32
    steps: int = 5
    alpha: float = 0.1
    beta: float = 1e-3
    first_order: bool = False
    hidden: int = 32
    dim: int = 16
    n_boot: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Section:
    """One SweSAT section: responses ``[5000, 80]``, item features ``[80, 2]``, training and test learners."""

    name: str
    responses: Tensor
    features: Tensor
    train: Tensor
    test: Tensor


def load_sections(config: Config) -> dict[str, Section]:
    """Every section of ``config.sections``: split by learner (seeded), features from its training learners."""
    from course_lib.data.swesat import load_swesat

    out = {}
    for name in config.sections:
        r = load_swesat(section=name).responses
        split = split_learners(r.shape[0], seed=config.seed)
        k_need = max(config.k_shots) + 1  # one right and one wrong answer are left to rank in the query
        test = split["test"][torch.isin(split["test"], episode_learners(r, k_need))]
        if len(test) < config.n_test:
            raise ValueError(f"{name}: only {len(test)} test learners have {k_need} right and {k_need} wrong "
                             f"answers; lower n_test (now {config.n_test}) or max(k_shots)")
        test = test[permutation(len(test), torch.Generator().manual_seed(config.seed))[:config.n_test]].sort().values
        train = split["train"][torch.isin(split["train"], episode_learners(r, config.k_train))]
        out[name] = Section(name, r, item_statistics(r[split["train"]]), train, test)
    return out


def embedding_net(config: Config) -> nn.Module:
    """The embedding f_θ shared by every meta-learner: item features [n, 2] -> [n, dim] (an MLP)."""
    return nn.Sequential(nn.Linear(2, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                         nn.Linear(config.hidden, config.dim))


def with_features(batch: TaskBatch, features: Tensor) -> TaskBatch:
    """The episode with item indices replaced by the items' features: x ``[tasks, n, 2]``."""
    return TaskBatch(features[batch.x_support], batch.y_support, features[batch.x_query], batch.y_query,
                     batch.support_mask, batch.query_mask)


def sampler(section: Section, config: Config) -> Callable[[torch.Generator], TaskBatch]:
    """``sample(generator)``: ``meta_batch`` random training learners of ``section`` as K_train episodes."""
    def sample(g: torch.Generator) -> TaskBatch:
        chosen = section.train[torch.randint(len(section.train), (config.meta_batch,), generator=g)]
        seed = int(torch.randint(2**31 - 1, (1,), generator=g))
        episodes = learner_episodes(section.responses, (config.k_train,), chosen, seed=seed)
        return with_features(episodes[config.k_train], section.features)
    return sample


# Each meta-method: (config, source section, device) -> (score(batch) -> [tasks, n_query], history).
Scorer = Callable[[TaskBatch], Tensor]
TRAINERS: Registry[Callable[[Config, Section, torch.device, bool], tuple[Scorer, dict]]] = Registry("meta-learner")


def _margin(logits: Tensor) -> Tensor:
    """The score of "right": logit(right) − logit(wrong), ``[tasks, n_query]``."""
    return (logits[..., 1] - logits[..., 0]).cpu()


@TRAINERS.register("protonet")
def _protonet(config: Config, source: Section, device: torch.device, progress: bool) -> tuple[Scorer, dict]:
    torch.manual_seed(config.seed)
    net = ProtoNet(embedding_net(config).to(device))
    history = net.fit(sampler(source, config), config.iterations, beta=config.beta, seed=config.seed,
                      progress=progress, log_every=50)
    return (lambda b: _margin(net.logits(b.to(device), n_way=2).detach())), history


@TRAINERS.register("maml")
def _maml(config: Config, source: Section, device: torch.device, progress: bool) -> tuple[Scorer, dict]:
    torch.manual_seed(config.seed)
    model = nn.Sequential(embedding_net(config), nn.Linear(config.dim, 2)).to(device)
    learner = MAML(model, "cross_entropy", alpha=config.alpha, steps=config.steps, first_order=config.first_order)
    history = learner.fit(sampler(source, config), config.iterations, beta=config.beta, seed=config.seed,
                          progress=progress, log_every=50)

    def score(b: TaskBatch) -> Tensor:
        b = b.to(device)
        return _margin(learner.predict_batch(learner.adapt_batch(b), b.x_query))
    return score, history


@TRAINERS.register("protomaml")
def _protomaml(config: Config, source: Section, device: torch.device, progress: bool) -> tuple[Scorer, dict]:
    torch.manual_seed(config.seed)
    learner = ProtoMAML(embedding_net(config).to(device), alpha=config.alpha, steps=config.steps,
                        first_order=config.first_order)
    history = learner.fit(sampler(source, config), config.iterations, beta=config.beta, seed=config.seed,
                          progress=progress, log_every=50)
    return (lambda b: _margin(learner.logits(b, n_way=2))), history


# Each baseline: (target section, episodes with item indices) -> P(right) or a score [tasks, n_query].
BASELINES: Registry[Callable[[Section, TaskBatch], Tensor]] = Registry("baseline")


@BASELINES.register("item_easiness")
def _item_easiness(target: Section, episodes: TaskBatch) -> Tensor:
    return target.features[:, 0][episodes.x_query]


@BASELINES.register("irt_2pl_eap")
def _irt(target: Section, episodes: TaskBatch) -> Tensor:
    return eap_predict(_fit_2pl(target), episodes.x_support, episodes.y_support.float(), None, episodes.x_query)


@functools.lru_cache(maxsize=1)  # one 2PL fit per target section, reused for every K
def _fit_2pl(target: Section):
    return fit_2pl(target.responses[target.train])


METHODS = set(TRAINERS.names()) | set(BASELINES.names())


def _check(config: Config) -> None:
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    bad = [s for s in config.sections if s not in SECTIONS]
    if bad or not config.sections:
        raise ValueError(f"sections must be a non-empty subset of {SECTIONS}, got {config.sections}")
    if not config.k_shots or min(config.k_shots) < 1 or config.k_train < 1:
        raise ValueError(f"k_shots and k_train must be >= 1, got {config.k_shots} and {config.k_train}")
    if small := [n for n in ("n_test", "iterations", "meta_batch", "hidden", "dim") if getattr(config, n) < 1]:
        raise ValueError(f"{small} must be >= 1, got {[getattr(config, n) for n in small]}")
    if config.n_test < 2 or config.n_boot < 1:
        raise ValueError(f"need n_test >= 2 learners and n_boot >= 1, got {config.n_test} and {config.n_boot}")
    if config.steps < 0 or not config.alpha > 0 or not config.beta > 0:
        raise ValueError(f"need steps >= 0, alpha > 0 and beta > 0, got {config.steps}, {config.alpha}, {config.beta}")


def _row(method: str, source: str, target: str, k: int, auc: np.ndarray, acc: np.ndarray, n_boot: int, seed: int) -> dict:
    kind = "baseline" if method in BASELINES else "meta"
    condition = "target calibration only" if kind == "baseline" else ("in-domain" if source == target else "shifted")
    row = {"method": method, "kind": kind, "source": source, "target": target, "condition": condition, "K": k}
    for name, values in (("auc", auc), ("accuracy", acc)):
        row.update(zip((name, f"{name}_lo", f"{name}_hi"), metrics.bootstrap_mean_ci(values, n_boot, seed=seed)))
    return {**row, "n_learners": int(len(auc))}


def run(config: Config = Config(), *, progress: bool = True, device: str | torch.device | None = None) -> Result:
    """Train every meta-learner on every source section, score every method on every target; see the module."""
    _check(config)
    dev = device if isinstance(device, torch.device) else get_device(device)
    with stopwatch() as elapsed, cpu_threads(1 if dev.type == "cpu" else None):
        sections = load_sections(config)
        episodes = {t: learner_episodes(s.responses, config.k_shots, s.test, seed=config.seed)
                    for t, s in sections.items()}
        scores: dict[tuple[str, str, str, int], Tensor] = {}
        history, timings = {}, {}
        for method in (m for m in config.methods if m in BASELINES):
            for t, s in sections.items():
                for k in config.k_shots:
                    scores[(method, t, t, k)] = BASELINES[method](s, episodes[t][k])
        for method in (m for m in config.methods if m in TRAINERS):
            for src, source in sections.items():
                with stopwatch() as train_s:
                    score, history[f"{method}/{src}"] = TRAINERS[method](config, source, dev, progress)
                timings[f"{method}/{src}"] = train_s()
                for t, target in sections.items():
                    for k in config.k_shots:
                        scores[(method, src, t, k)] = score(with_features(episodes[t][k], target.features))
        rows, per_learner = [], {}
        for (method, src, t, k), s in scores.items():
            batch = episodes[t][k]
            auc = metrics.row_auc(batch.y_query, s, batch.query_mask)
            correct = ((s > (0.5 if method == "irt_2pl_eap" else 0.0)).long() == batch.y_query).float()
            m = batch.query_mask.float()
            acc = ((correct * m).sum(1) / m.sum(1)).numpy()
            per_learner[(method, src, t, k)] = auc
            rows.append(_row(method, src, t, k, auc, acc, config.n_boot, config.seed))
        paired, shift = _paired(per_learner, config), _shift_cost(per_learner, config)
    return Result("protomaml_shift", rows, dataclasses.asdict(config), elapsed(),
                  {"paired": paired, "shift_cost": shift, "history": history, "timings": timings})


def _paired(per_learner: dict, config: Config) -> list[dict]:
    """ProtoMAML minus each other method (same learners, target, K and source), paired bootstrap CIs."""
    out = []
    for (method, src, t, k), v in per_learner.items():
        if method != "protomaml":
            continue
        others = {m: u for (m, s, tt, kk), u in per_learner.items()
                  if tt == t and kk == k and m != method and (s == src or m in BASELINES)}
        for d in metrics.paired_differences({method: v, **others}, tuple(others), config.n_boot, seed=config.seed):
            if d["method"] == method:
                out.append({"source": src, "target": t, "K": k, "versus": d["versus"],
                            "diff": d["diff"], "lo": d["lo"], "hi": d["hi"]})
    return out


def _shift_cost(per_learner: dict, config: Config) -> list[dict]:
    """Each meta-learner trained on the other section minus trained on the target (same learners), paired CIs."""
    out = []
    for (method, src, t, k), v in per_learner.items():
        if method in BASELINES or src == t or (method, t, t, k) not in per_learner:
            continue
        d, lo, hi = metrics.bootstrap_mean_ci(v - per_learner[(method, t, t, k)], config.n_boot, seed=config.seed)
        out.append({"method": method, "source": src, "target": t, "K": k, "diff": d, "lo": lo, "hi": hi})
    return out


def table(result: Result) -> str:
    """The AUC table: one row per (target, method, source), one column per K, 'mean [lo, hi]'."""
    import pandas as pd
    df = pd.DataFrame(result.rows)
    df["AUC"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(df.auc, df.auc_lo, df.auc_hi)]
    return df.pivot_table(index=["target", "condition", "method", "source"], columns="K", values="AUC",
                          aggfunc="first").to_string()


def main(argv: Sequence[str] | None = None) -> Result:
    return cli(run, Config, argv, description=__doc__.splitlines()[0], show=table)


if __name__ == "__main__":
    main()
