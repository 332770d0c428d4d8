"""Cold-start learner modelling: predict a new learner's answers from K of them.

Derived in chapter 05. Learners are split into train / validation / test *by learner*; every
test learner is a task whose support set 𝒟ᵢˢ is K of their answered items (drawn at random, the
same draw for every method; the supports for growing K are nested) and whose query set 𝒟ᵢ^q is
every other answered item. Methods:

==========================  ========  ===========================================================
method                      kind      what it is
==========================  ========  ===========================================================
item_mean                   baseline  share correct per item in the training learners
irt_2pl_eap                 baseline  2PL fitted on the training learners, ability = EAP from K
irt_2pl_by_group            baseline  one 2PL per item group (e.g. test section), EAP per group
per_learner_logistic        baseline  logistic regression on the learner's own K answers only
pretrain_finetune           baseline  network trained on pooled answers, fine-tuned on K answers
nearest_learners            meta      metric-based: the most similar training learners' answers
maml / fomaml / reptile     meta      `MetaIRT` item parameters meta-learned, ability adapted
meta_sgd                    meta      MAML with a learned inner step α per ability dimension
bayes_optimal               ceiling   posterior predictive under the true parameters (synthetic)
==========================  ========  ===========================================================

Metrics per method and K, pooled over the test learners' query answers: AUC, log-loss and
expected calibration error, with 95 % bootstrap intervals that resample *learners*.

    python -m course_lib.experiments.cold_start --dataset swesat --json swesat.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from course_lib.data.responses import split_learners, validate_responses
from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["run", "MetaConfig", "METHODS", "KINDS", "pooled_metrics", "evaluation_tasks", "load", "table",
           "main"]

KINDS = {"item_mean": "baseline", "irt_2pl_eap": "baseline", "irt_2pl_by_group": "baseline",
         "per_learner_logistic": "baseline", "pretrain_finetune": "baseline",
         "nearest_learners": "meta", "maml": "meta", "fomaml": "meta", "reptile": "meta",
         "meta_sgd": "meta", "bayes_optimal": "ceiling"}
#: Methods run by default (irt_2pl_by_group needs ``groups``, bayes_optimal needs ``truth``).
METHODS = ("item_mean", "irt_2pl_eap", "irt_2pl_by_group", "per_learner_logistic", "pretrain_finetune",
           "nearest_learners", "maml", "fomaml", "reptile", "meta_sgd", "bayes_optimal")

Predictor = Callable[[TaskBatch], Tensor]   # support/query batch -> P(correct) [tasks, n_query]


# ----------------------------------------------------------------------------- metrics

def pooled_metrics(y: np.ndarray, p: np.ndarray, learner: np.ndarray, *, n_boot: int = 200,
                   seed: int = 0, n_bins: int = 10, score_bins: int = 4096) -> dict[str, float]:
    """AUC, log-loss, ECE of pooled predictions, with 95 % CIs from a bootstrap over learners.

    ``y``, ``p``, ``learner`` are flat arrays (answer, prediction, learner id 0..L-1). Each
    resample draws L learners with replacement (a ``numpy`` generator seeded by ``seed``: the same
    draws as `course_lib.metrics.bootstrap_ci`). To make 200 resamples cheap, every learner's
    answers are summarised once as counts of right / wrong per score bin (at most ``score_bins``
    bins of equal size in rank); a resample is then one sparse matrix product. With fewer distinct scores
    than bins the intervals equal `bootstrap_ci`'s exactly; otherwise ties inside a bin move the
    AUC by less than 1 / (2 · score_bins). The point estimates are exact. Derived in chapter 05, section 6.
    """
    from scipy import sparse

    from course_lib import metrics

    y = np.asarray(y, float)
    p = np.asarray(p, float)
    learner = np.asarray(learner)
    n_learners = int(learner.max()) + 1
    uniq, inv = np.unique(p, return_inverse=True)
    auc = float(metrics.auc_from_counts(np.bincount(inv, weights=y), np.bincount(inv, weights=1 - y)))
    if len(uniq) > score_bins:  # equal-size rank bins
        inv = (inv * score_bins) // len(uniq)
    n_u = int(inv.max()) + 1
    # learner x score-bin counts of right / wrong answers (sparse: each learner has ~n/L answers)
    h_pos = sparse.csr_matrix((y, (learner, inv)), shape=(n_learners, n_u))
    h_neg = sparse.csr_matrix((1 - y, (learner, inv)), shape=(n_learners, n_u))
    eps = 1e-6
    pc = np.clip(p, eps, 1 - eps)
    nll = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    nll_sum = np.bincount(learner, weights=nll, minlength=n_learners)
    count = np.bincount(learner, minlength=n_learners).astype(float)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_learners, n_learners), minlength=n_learners)
                       for _ in range(n_boot)]).astype(float) if n_boot else np.zeros((0, n_learners))
    aucs = (metrics.auc_from_counts(np.asarray((h_pos.T @ counts.T).T), np.asarray((h_neg.T @ counts.T).T))
            if n_boot else np.array([np.nan]))
    lls = counts @ nll_sum / (counts @ count) if n_boot else np.array([np.nan])
    auc_lo, auc_hi = np.nanquantile(aucs, [0.025, 0.975])
    ll_lo, ll_hi = np.nanquantile(lls, [0.025, 0.975])
    return {"auc": auc, "auc_lo": float(auc_lo), "auc_hi": float(auc_hi),
            "logloss": float(nll.mean()), "logloss_lo": float(ll_lo), "logloss_hi": float(ll_hi),
            "ece": metrics.expected_calibration_error(y, p, n_bins=n_bins)}


# ----------------------------------------------------------------------------- tasks

def evaluation_tasks(responses: Tensor, learners: Tensor, k_shot: int, seed: int) -> TaskBatch:
    """One task per learner: K random answered items as support, all other answered items as query.

    The random order of each learner's items depends only on ``seed`` (not on K), so the support
    sets for growing K are nested: the K = 3 items include the K = 1 item. Derived in chapter 05, section 2.
    """
    return learner_tasks(responses, k_shot, learners, generator=torch.Generator().manual_seed(seed))


def _flat(batch: TaskBatch, prob: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = batch.query_mask if batch.query_mask is not None else torch.ones_like(batch.y_query, dtype=torch.bool)
    learner = torch.arange(batch.n_tasks)[:, None].expand_as(mask)
    return (batch.y_query[mask].numpy(), prob.detach()[mask].clamp(0, 1).numpy().astype(float),
            learner[mask].numpy())


def _support(batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    return batch.x_support, batch.y_support, batch.support_mask, batch.x_query


# ----------------------------------------------------------------------------- meta-learners

@dataclass
class MetaConfig:
    """Meta-training settings shared by MAML, FOMAML, Meta-SGD and Reptile (see `run`)."""

    dims: int = 2
    alpha: float = 1.0
    steps: int = 3
    meta_batch: int = 64
    max_query: int = 40
    iterations: int = 200
    warm_iterations: int = 60
    beta: float = 0.03
    reptile_alpha: float = 1.0
    reptile_steps: int = 5


def _make_learner(method: str, model: torch.nn.Module, cfg: MetaConfig):
    from course_lib.algorithms import MAML, Reptile

    if method == "maml":
        return MAML(model, loss="bce", alpha=cfg.alpha, steps=cfg.steps, adapt=["ability"])
    if method == "fomaml":
        return MAML(model, loss="bce", alpha=cfg.alpha, steps=cfg.steps, first_order=True, adapt=["ability"])
    if method == "meta_sgd":
        return MAML(model, loss="bce", alpha=cfg.alpha, steps=cfg.steps, meta_sgd=True, adapt=["ability"])
    if method == "reptile":
        # Reptile moves θ towards the adapted φ, so the item parameters must adapt in the inner
        # loop too (with adapt=["ability"] they would never change); only the ability matters for
        # unseen items at test time.
        return Reptile(model, loss="bce", alpha=cfg.reptile_alpha, steps=cfg.reptile_steps, adapt=None)
    raise ValueError(f"unknown meta-learner {method!r}")


def _train_meta(method: str, responses: Tensor, train: Tensor, ks: Sequence[int], cfg: MetaConfig,
                seed: int, progress: bool, device: torch.device) -> dict[int, object]:
    """One meta-learner per K (the MAML protocol), each warm-started from the previous K's θ."""
    from course_lib.models.meta_irt import MetaIRT

    p = torch.nanmean(responses[train], 0).clamp(0.02, 0.98)
    learners: dict[int, object] = {}
    state, prev_alphas = None, None
    for i, k in enumerate(sorted(ks)):
        model = MetaIRT(responses.shape[1], cfg.dims, init_d=torch.logit(p), seed=seed)
        if state is not None:
            model.load_state_dict(state)
        model.to(device)
        learner = _make_learner(method, model, cfg)
        if getattr(learner, "alphas", None) and prev_alphas is not None:
            for name, a in learner.alphas.items():
                a.data.copy_(prev_alphas[name])

        def sample(g: torch.Generator, k: int = k) -> TaskBatch:
            ix = train[torch.randint(len(train), (cfg.meta_batch,), generator=g)]
            return learner_tasks(responses, k, ix, generator=g, max_query=cfg.max_query).to(device)

        iters = cfg.iterations if i == 0 else cfg.warm_iterations
        opt = torch.optim.Adam(learner.parameters(), lr=cfg.beta)
        learner.fit(sample, iters, seed=seed + 1000 * k, progress=progress, optimizer=opt,
                    log_every=max(iters // 4, 1))
        state = {n: v.detach().clone() for n, v in model.state_dict().items()}
        prev_alphas = ({n: a.detach().clone() for n, a in learner.alphas.items()}
                       if getattr(learner, "alphas", None) else None)
        learners[k] = learner
    return learners


def _meta_predict(learner, batch: TaskBatch) -> Tensor:
    device = next(iter(learner.theta.values())).device
    batch = batch.to(device)
    phi = learner.adapt_batch(batch)
    return torch.sigmoid(learner.predict_batch(phi, batch.x_query)).cpu()


# ----------------------------------------------------------------------------- run

def run(responses, ks: Sequence[int] = (1, 3, 5, 10, 20), methods: Sequence[str] | None = None,
        seed: int = 0, *, dataset: str = "custom", groups: Sequence[str] | None = None, truth=None,
        fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), meta: MetaConfig | None = None,
        n_boot: int = 200, progress: bool = True, keep_predictions: bool = True,
        device: torch.device | str | None = None, threads: int | None = 1) -> dict:
    """Compare cold-start predictors on ``responses [learners, items]`` (1/0, NaN missing).

    ``groups`` (one label per item, e.g. test section) enables ``irt_2pl_by_group`` and group
    features for ``per_learner_logistic``; ``truth`` (a `SyntheticIRT`) enables ``bayes_optimal``.
    Hyper-parameters of baselines (ridge λ, fine-tuning rate and steps, neighbours) are picked
    on the validation learners; meta-learners use ``meta`` (`MetaConfig`). Returns a dict with
    ``dataset``, ``wall_s``, ``rows`` (one per method and K: method, kind, k, auc, auc_lo, auc_hi,
    logloss, logloss_lo, logloss_hi, ece, n_learners, n_answers, train_s = the method's fitting
    plus prediction time over all K), ``split``, ``config``,
    ``timings`` and, with ``keep_predictions``, ``predictions[method][k] = (y, p, learner)``
    arrays, ``supports[k]`` (the tasks) and ``models`` (fitted objects). JSON-safe parts are
    written by the CLI. Meta-training runs on ``device`` (default `get_device()`); everything else
    on the CPU with ``threads`` torch threads (1 is fastest for these tiny models on a small or
    busy CPU; None leaves torch's setting). Derived in chapter 05, section 6.
    """
    from course_lib.device import cpu_threads, get_device

    device = get_device() if device is None else torch.device(device)
    with cpu_threads(threads):
        return _run(responses, ks, methods, seed, dataset=dataset, groups=groups, truth=truth,
                    fractions=fractions, meta=meta, n_boot=n_boot, progress=progress,
                    keep_predictions=keep_predictions, device=device)


def _run(responses, ks, methods, seed, *, dataset, groups, truth, fractions, meta, n_boot, progress,
         keep_predictions, device) -> dict:
    t_start = time.perf_counter()
    ks = sorted(int(k) for k in ks)
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive support sizes, got {ks}")
    explicit = methods is not None
    methods = list(METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in KINDS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(KINDS)}")
    for name, needs, what in (("irt_2pl_by_group", groups, "groups= (one label per item)"),
                              ("bayes_optimal", truth, "truth= (the SyntheticIRT that generated the data)")):
        if name in methods and needs is None:
            if explicit:
                raise ValueError(f"{name} needs {what}")
            methods.remove(name)
    r = validate_responses(responses, k_shot=ks[-1], name="responses")
    if groups is not None and len(groups) != r.shape[1]:
        raise ValueError(f"groups has {len(groups)} labels but responses has {r.shape[1]} items")
    cfg = meta or MetaConfig()
    split = split_learners(r.shape[0], fractions, seed=seed)
    train, val, test = split["train"], split["validation"], split["test"]
    r_train = r[train]
    test_tasks = {k: evaluation_tasks(r, test, k, seed=seed + 1) for k in ks}
    val_tasks = {k: evaluation_tasks(r, val, k, seed=seed + 2) for k in ks} if len(val) else {}

    def val_loss(pred: Predictor, k: int) -> float:
        b = val_tasks[k]
        y, p, _ = _flat(b, pred(b))
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    def pick(candidates: dict, make: Callable[[object], Predictor], k: int):
        if not val_tasks:
            return next(iter(candidates.values()))
        return min(candidates.values(), key=lambda c: val_loss(make(c), k))

    predictors: dict[str, dict[int, Predictor]] = {}
    timings: dict[str, float] = {}
    models: dict[str, object] = {}
    for method in methods:
        t0 = time.perf_counter()
        per_k: dict[int, Predictor] = {}
        if method == "item_mean":
            from course_lib.baselines.item_mean import ItemMean
            im = ItemMean(r_train)
            models[method] = im
            per_k = {k: (lambda b, im=im: im.predict(*_support(b))) for k in ks}
        elif method == "irt_2pl_eap":
            from course_lib.baselines.irt import fit_2pl
            params = fit_2pl(r_train, seed=seed)
            models[method] = params
            per_k = {k: (lambda b, prm=params: _irt_predict(prm, b)) for k in ks}
        elif method == "irt_2pl_by_group":
            from course_lib.baselines.irt import fit_2pl
            labels = np.asarray(groups)
            fitted = {}
            for lab in sorted(set(groups)):
                cols = torch.as_tensor(np.nonzero(labels == lab)[0])
                sub = r_train[:, cols]
                keep = ~torch.isnan(sub).all(1)
                fitted[lab] = (cols, fit_2pl(sub[keep], seed=seed))
            models[method] = fitted
            per_k = {k: (lambda b, f=fitted: _irt_by_group_predict(f, b, r.shape[1])) for k in ks}
        elif method == "per_learner_logistic":
            from course_lib.baselines.logistic import PerLearnerLogistic
            feats = (PerLearnerLogistic.group_features(groups) if groups is not None else None)
            for k in ks:
                cands = {l2: PerLearnerLogistic(feats, n_items=r.shape[1], l2=l2) for l2 in (0.3, 1.0, 3.0, 10.0)}
                best = pick(cands, lambda m: (lambda b: m.predict(*_support(b))), k)
                per_k[k] = (lambda b, m=best: m.predict(*_support(b)))
        elif method == "pretrain_finetune":
            from course_lib.baselines.fine_tuning import PretrainFinetune
            pf = PretrainFinetune(r.shape[1], dims=cfg.dims, seed=seed)
            pf.pretrain(r_train)
            models[method] = pf
            grid = {(a, s): (a, s) for a in (0.3, 1.0, 3.0) for s in (1, 5)}
            for k in ks:
                a, s = pick(grid, lambda c: (lambda b: pf.predict(*_support(b), alpha=c[0], steps=c[1])), k)
                per_k[k] = (lambda b, a=a, s=s: pf.predict(*_support(b), alpha=a, steps=s))
        elif method == "nearest_learners":
            from course_lib.models.nearest_learners import NearestLearners
            base = NearestLearners(r_train)
            cands = {(nb, t): NearestLearners(r_train, k=min(nb, len(train)), temperature=t)
                     for nb in (50, 200) for t in (0.05, 0.2, 1.0)}
            for k in ks:
                d_val = base.distances(*_support(val_tasks[k])[:3]) if val_tasks else None
                best = pick(cands, lambda m: (lambda b: m.predict(*_support(b), distances=d_val)), k)
                per_k[k] = (lambda b, m=best: m.predict(*_support(b)))
        elif method in ("maml", "fomaml", "reptile", "meta_sgd"):
            learners = _train_meta(method, r, train, ks, cfg, seed, progress, device)
            if method == "reptile" and val_tasks:
                # Reptile never optimises the prediction *after* K answers, so how far to move at
                # test time is not learned: pick the inner step and the number of steps on the
                # validation learners (the meta-parameters θ stay as Reptile learned them).
                from course_lib.algorithms import Reptile
                for k in ks:
                    grid = {(a, s): Reptile(learners[k].model, loss="bce", alpha=a, steps=s, adapt=None)
                            for a in (0.1, 0.3, 1.0) for s in (1, 3, 10)}
                    learners[k] = pick(grid, lambda lr: (lambda b: _meta_predict(lr, b)), k)
            models[method] = learners
            per_k = {k: (lambda b, lr=learners[k]: _meta_predict(lr, b)) for k in ks}
        elif method == "bayes_optimal":
            per_k = {k: (lambda b: truth.posterior_predictive(*_support(b))) for k in ks}
        predictors[method] = per_k
        timings[method] = time.perf_counter() - t0

    rows, predictions = [], {}
    for method in methods:
        predictions[method] = {}
        for k in ks:
            b = test_tasks[k]
            t0 = time.perf_counter()
            y, p, learner = _flat(b, predictors[method][k](b))
            timings[method] += time.perf_counter() - t0
            m = pooled_metrics(y, p, learner, n_boot=n_boot, seed=seed)
            rows.append({"method": method, "kind": KINDS[method], "k": k, **m,
                         "n_learners": int(b.n_tasks), "n_answers": int(len(y))})
            if keep_predictions:
                predictions[method][k] = (y, p, learner)
    for row in rows:
        row["train_s"] = round(timings[row["method"]], 3)
    out = {"dataset": dataset, "wall_s": time.perf_counter() - t_start, "rows": rows,
           "split": {name: idx.tolist() for name, idx in split.items()},
           "config": {"ks": ks, "methods": methods, "seed": seed, "fractions": list(fractions),
                      "meta": dict(cfg.__dict__), "n_boot": n_boot, "device": str(device)},
           "timings": timings}
    if keep_predictions:
        out.update(predictions=predictions, supports=test_tasks, models=models)
    return out


def _irt_predict(params, b: TaskBatch) -> Tensor:
    from course_lib.baselines.irt import eap_ability_batch
    theta, _ = eap_ability_batch(params.a, params.b, b.x_support, b.y_support, b.support_mask)
    q = b.x_query
    return torch.sigmoid(params.a[q] * theta[:, None] + params.d[q])


def _irt_by_group_predict(fitted: dict, b: TaskBatch, n_items: int) -> Tensor:
    from course_lib.baselines.irt import eap_ability_batch
    out = torch.zeros(b.x_query.shape)
    mask = b.support_mask if b.support_mask is not None else torch.ones_like(b.x_support, dtype=torch.bool)
    for cols, params in fitted.values():
        local = torch.full((n_items,), -1, dtype=torch.long)
        local[cols] = torch.arange(len(cols))
        ls = local[b.x_support]
        theta, _ = eap_ability_batch(params.a, params.b, ls.clamp_min(0), b.y_support, mask & (ls >= 0))
        lq = local[b.x_query]
        p = torch.sigmoid(params.a[lq.clamp_min(0)] * theta[:, None] + params.d[lq.clamp_min(0)])
        out = torch.where(lq >= 0, p, out)
    return out


# ----------------------------------------------------------------------------- CLI

def load(dataset: str, seed: int = 0):
    """(responses, groups, truth) for a named dataset: swesat, verbagg, synthetic, synthetic_2d.

    ``groups`` is the SweSAT section of each item (None otherwise); ``truth`` the `SyntheticIRT`
    for the synthetic sets (None otherwise). The data cards in ``datasets/`` describe each one.
    """
    if dataset == "swesat":
        from course_lib.data.swesat import load_swesat
        d = load_swesat()
        return d.responses, list(d.items["group"]), None
    if dataset == "verbagg":
        from course_lib.data.verbagg import load_verbagg
        d = load_verbagg()
        return d.responses, None, None
    if dataset in ("synthetic", "synthetic_2d"):
        from course_lib.data.synthetic import sample_2pl
        s = (sample_2pl(2000, 60, missing_rate=0.05, seed=seed) if dataset == "synthetic" else
             sample_2pl(2000, 60, dims=2, correlation=0.3, missing_rate=0.05, seed=seed))
        if dataset == "synthetic" and seed == 0:
            from course_lib.data.responses import verify_checksum
            from course_lib.data.synthetic import STUDY_SHA256
            verify_checksum(s.responses, STUDY_SHA256, dataset="synthetic 2PL",
                            card="datasets/synthetic_irt.md")
        return s.responses, None, s
    raise ValueError(f"unknown dataset {dataset!r}; use swesat, verbagg, synthetic or synthetic_2d")


def table(result: dict):
    """The result's rows as a pandas DataFrame, one row per method and K."""
    import pandas as pd
    return pd.DataFrame(result["rows"])


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m course_lib.experiments.cold_start --dataset swesat [--json FILE]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["swesat", "verbagg", "synthetic", "synthetic_2d"], default="swesat")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10, 20])
    ap.add_argument("--methods", nargs="+", default=None, choices=list(KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write {dataset, wall_s, rows} to this file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    responses, groups, truth = load(args.dataset, seed=args.seed)
    result = run(responses, ks=args.ks, methods=args.methods, seed=args.seed, dataset=args.dataset,
                 groups=groups, truth=truth, progress=not args.no_progress, keep_predictions=False)
    cols = ["method", "kind", "k", "auc", "auc_lo", "auc_hi", "logloss", "ece", "n_learners"]
    print(table(result)[cols].round(4).to_string(index=False))
    print(f"wall time: {result['wall_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: result[k] for k in ("dataset", "wall_s", "rows", "config", "timings")}, f, indent=1)
    return result


if __name__ == "__main__":
    main()
