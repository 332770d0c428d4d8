"""Two-parameter logistic (2PL) item response theory: fit, ability by EAP, information.

Derived in chapter 05, section 3 (and used for adaptive testing in chapter 07). A learner with
ability θ answers item j correctly with probability

    P(yⱼ = 1 | θ) = σ(aⱼ (θ − bⱼ)),      aⱼ discrimination, bⱼ difficulty,

abilities are N(0, 1) in the population. Item parameters are fitted by *marginal* maximum
likelihood on the training learners (θ integrated out on a quadrature grid, Bock & Aitkin 1981);
a new learner's ability is the posterior mean (EAP) given their K answers.

Two engines fit the same model: ``engine="irtorch"`` calls irtorch's ``TwoParameterLogistic`` with
its ``MML`` algorithm (the reference; Adam on the marginal likelihood, ~2.5 min for SweSAT's 3500
x 160 training matrix on a 2-core CPU), and ``engine="torch"`` (default) maximises the *same*
marginal likelihood with L-BFGS on a 61-point grid written as two matrix products (about 30
L-BFGS iterations, seconds). The two agree (tests/test_irt.py checks it); the fast one keeps the
whole SweSAT study under 2 minutes. As in irtorch, a is not constrained to be positive: an item
that does not measure the ability gets a ≈ 0 (and then b = −d/a is meaningless; use ``d``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ItemParams", "fit_2pl", "prob_correct", "fisher_information", "quadrature_grid", "answer_counts",
           "grid_log_likelihood", "grid_posterior", "eap_ability", "eap_ability_batch", "posterior_predictive_batch",
           "eap_predict", "fit_2pl_by_group", "eap_predict_by_group", "marginal_log_likelihood",
           "maximise_marginal_likelihood"]


@dataclass(frozen=True)
class ItemParams:
    """Fitted 2PL item parameters: ``a [items]`` discrimination, ``b [items]`` difficulty.

    P(correct | θ) = σ(a (θ − b)) = σ(a θ + d) with intercept ``d = −a b``. ``info`` holds how the
    fit went (engine, iterations, marginal log-likelihood per learner).
    """

    a: Tensor
    b: Tensor
    info: dict = field(default_factory=dict, compare=False)

    @property
    def d(self) -> Tensor:
        """Slope-intercept form: logit = a θ + d, d = −a b."""
        return -self.a * self.b

    def to_frame(self, names: list[str] | None = None) -> pd.DataFrame:
        """One row per item: ``a`` and ``b`` (and ``item`` names if given)."""
        df = pd.DataFrame({"a": self.a.detach().cpu().numpy(), "b": self.b.detach().cpu().numpy()})
        if names is not None:
            df.insert(0, "item", list(names))
        return df


# ----------------------------------------------------------------------------- the model

def prob_correct(theta: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """P(correct) = σ(a (θ − b)), broadcasting ``theta`` against ``a`` and ``b``.

    E.g. theta ``[learners, 1]`` with a, b ``[items]`` gives ``[learners, items]``.
    Derived in chapter 05, section 3.
    """
    return torch.sigmoid(a * (theta - b))


def fisher_information(theta: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Item information I(θ) = a² p (1 − p) with p = σ(a(θ − b)); broadcasts like `prob_correct`.

    The inverse of the summed information is the asymptotic variance of the ability estimate;
    adaptive testing (chapter 07) gives the item with the largest I(θ̂). Derived in chapter 05, section 3.
    """
    p = prob_correct(theta, a, b)
    return a * a * p * (1 - p)


def quadrature_grid(n_quad: int = 61, prior_mean: float = 0.0, prior_sd: float = 1.0,
                    width: float = 6.0) -> tuple[Tensor, Tensor]:
    """Nodes and log-weights of the N(prior_mean, prior_sd²) prior on a uniform grid.

    ``n_quad`` equally spaced nodes on prior_mean ± width·prior_sd, weights ∝ the normal density,
    normalised to sum to 1 (the default 61 points on ±6 SD is mirt's default). Returns ``nodes [Q]``,
    ``log_w [Q]`` (float64 for accurate posteriors). Derived in chapter 05, section 3.
    """
    if n_quad < 3:
        raise ValueError(f"n_quad must be >= 3 quadrature points, got {n_quad}")
    if not prior_sd > 0:
        raise ValueError(f"prior_sd must be > 0, got {prior_sd}")
    z = torch.linspace(-width, width, n_quad, dtype=torch.float64)
    log_w = -0.5 * z * z
    log_w = log_w - torch.logsumexp(log_w, 0)
    return prior_mean + prior_sd * z, log_w


# ----------------------------------------------------------------------------- posteriors

def _check_items(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D tensors of the same length (one per item), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def answer_counts(items: Tensor, answers: Tensor, mask: Tensor | None, n_items: int) -> tuple[Tensor, Tensor]:
    """Support answers ``items/answers/mask [learners, K]`` as dense right / wrong counts ``[learners, n_items]``.

    float64; masked-out entries count nowhere. Derived in chapter 05, section 3.
    """
    items = torch.as_tensor(items).long()
    m = (torch.ones_like(items, dtype=torch.bool) if mask is None else mask).to(torch.float64)
    y = torch.as_tensor(answers).to(torch.float64)
    zeros = torch.zeros(items.shape[0], n_items, dtype=torch.float64)
    return zeros.scatter_add(1, items, m * y), zeros.scatter_add(1, items, m * (1 - y))


def grid_log_likelihood(correct: Tensor, wrong: Tensor, item_logits: Tensor) -> Tensor:
    """log P(answers | θ = node q) for every learner and grid node: ``[learners, Q]``.

    ``correct``, ``wrong`` ``[learners, items]`` answer counts (e.g. from `answer_counts`, or the
    indicator matrices of a full response matrix); ``item_logits [items, Q]`` the logit of a right
    answer to each item at each node (any model, any number of ability dimensions behind the nodes).
    Two matrix products: Y · log σ(z) + N · log σ(−z). The one grid likelihood behind EAP, the
    posterior predictive, the marginal likelihood and the synthetic ceiling. Derived in chapter 05, section 3.
    """
    return correct @ F.logsigmoid(item_logits) + wrong @ F.logsigmoid(-item_logits)


def grid_posterior(log_lik: Tensor, log_w: Tensor) -> Tensor:
    """Posterior weights on the grid, softmax(log-likelihood + log prior): ``[learners, Q]``."""
    return torch.softmax(log_lik + log_w, dim=-1)


def _posterior_2pl(a: Tensor, b: Tensor, items: Tensor, answers: Tensor, mask: Tensor, n_quad: int,
                   prior_mean: float, prior_sd: float) -> tuple[Tensor, Tensor, Tensor]:
    """(posterior [L, Q], nodes [Q], item logits [items, Q]) of the 2PL ability given the answers."""
    nodes, log_w = quadrature_grid(n_quad, prior_mean, prior_sd)
    logits = a[:, None] * (nodes[None, :] - b[:, None])                    # [items, Q]
    correct, wrong = answer_counts(items, answers, mask, len(a))
    return grid_posterior(grid_log_likelihood(correct, wrong, logits), log_w), nodes, logits


def _batch_inputs(a: Tensor, items, answers, mask) -> tuple[Tensor, Tensor, Tensor]:
    items = torch.as_tensor(items).long()
    answers = torch.as_tensor(answers)
    if items.dim() != 2 or answers.shape != items.shape:
        raise ValueError(f"items and answers must both be [learners, k], got {tuple(items.shape)} and "
                         f"{tuple(answers.shape)}")
    mask = torch.ones_like(items, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    if mask.shape != items.shape:
        raise ValueError(f"mask must be [learners, k] like items, got {tuple(mask.shape)}")
    if items.numel() and (items.min() < 0 or items.max() >= len(a)):
        raise ValueError(f"item indices must lie in 0..{len(a) - 1}, got {int(items.min())}..{int(items.max())}")
    used = answers[mask]
    if torch.isnan(used.float()).any():
        raise ValueError("answers contain NaN where mask is True; mark missing answers with mask=False")
    if ((used != 0) & (used != 1)).any():
        raise ValueError("answers must be 0 (incorrect) or 1 (correct)")
    answers = torch.where(mask, answers.float().nan_to_num(0.0), torch.zeros(()))
    return items, answers, mask


def eap_ability_batch(a: Tensor, b: Tensor, items: Tensor, answers: Tensor, mask: Tensor | None = None,
                      *, prior_mean: float = 0.0, prior_sd: float = 1.0,
                      n_quad: int = 61) -> tuple[Tensor, Tensor]:
    """EAP ability (posterior mean) and posterior SD for many learners at once.

    ``items [learners, k]`` item indices, ``answers [learners, k]`` 0/1, ``mask [learners, k]``
    (False = padding / no answer, ignored; a learner with no answer gets the prior). Returns
    ``(mean [learners], sd [learners])`` float32. Derived in chapter 05, section 3.
    """
    a, b = _check_items(a, b)
    items, answers, mask = _batch_inputs(a, items, answers, mask)
    post, nodes, _ = _posterior_2pl(a, b, items, answers, mask, n_quad, prior_mean, prior_sd)  # [L, Q]
    mean = post @ nodes
    var = post @ (nodes * nodes) - mean * mean
    return mean.float(), var.clamp_min(0).sqrt().float()


def eap_ability(a: Tensor, b: Tensor, items: Tensor, answers: Tensor, *, prior_mean: float = 0.0,
                prior_sd: float = 1.0, n_quad: int = 61) -> tuple[float, float]:
    """EAP ability of ONE learner from answers to ``items [k]``: (posterior mean, posterior SD).

    E[θ | answers] = Σ_q θ_q w_q Π_j P(y_j | θ_q) / Σ_q w_q Π_j P(y_j | θ_q) on the prior grid of
    `quadrature_grid`. With no answers (k = 0) it returns the prior. Derived in chapter 05, section 3.
    """
    items = torch.as_tensor(items).long().reshape(1, -1)
    answers = torch.as_tensor(answers).float().reshape(1, -1)
    if items.shape != answers.shape:
        raise ValueError(f"items and answers must have the same length, got {items.shape[1]} and "
                         f"{answers.shape[1]}")
    mean, sd = eap_ability_batch(a, b, items, answers, prior_mean=prior_mean, prior_sd=prior_sd,
                                 n_quad=n_quad)
    return float(mean[0]), float(sd[0])


def posterior_predictive_batch(a: Tensor, b: Tensor, items: Tensor, answers: Tensor,
                               mask: Tensor | None, query_items: Tensor, *, prior_mean: float = 0.0,
                               prior_sd: float = 1.0, n_quad: int = 61) -> Tensor:
    """P(correct on each query item | the K answers), integrating θ over its posterior.

    Σ_q post(θ_q) σ(a_j(θ_q − b_j)): the Bayes-optimal prediction when a, b are the true item
    parameters (the ceiling on synthetic data). ``query_items [learners, n]`` → ``[learners, n]``
    float32. Derived in chapter 05, section 3.
    """
    a, b = _check_items(a, b)
    items, answers, mask = _batch_inputs(a, items, answers, mask)
    post, _, logits = _posterior_2pl(a, b, items, answers, mask, n_quad, prior_mean, prior_sd)  # [L, Q]
    q = torch.as_tensor(query_items).long()
    return (post @ torch.sigmoid(logits).T).gather(1, q).float()


def eap_predict(params: ItemParams, items: Tensor, answers: Tensor, mask: Tensor | None,
                query_items: Tensor) -> Tensor:
    """Plug-in prediction σ(a_j θ̂ + d_j) on ``query_items [learners, n]`` at the EAP θ̂ from the K answers.

    The ``irt_2pl_eap`` baseline of chapter 05 (a point estimate, not the posterior predictive).
    ``items/answers/mask [learners, K]`` → ``[learners, n]``. Derived in chapter 05, section 3.
    """
    theta, _ = eap_ability_batch(params.a, params.b, items, answers, mask)
    q = torch.as_tensor(query_items).long()
    return torch.sigmoid(params.a[q] * theta[:, None] + params.d[q])


# ----------------------------------------------------------------------------- fitting

def marginal_log_likelihood(responses: Tensor, a: Tensor, d: Tensor, nodes: Tensor,
                            log_w: Tensor) -> Tensor:
    """Σ_i log ∫ Π_j P(y_ij | θ) N(θ) dθ on a grid, for ``responses [learners, items]`` with NaN missing.

    Written as two matrix products: log P(yᵢ | θ_q) = Yᵢ · log σ(a θ_q + d) + Nᵢ · log σ(−a θ_q − d)
    where Y and N are the correct / incorrect indicator matrices (missing cells are 0 in both).
    Derived in chapter 05, section 3.
    """
    correct = (responses == 1).to(a.dtype)
    wrong = (responses == 0).to(a.dtype)
    logits = a[:, None] * nodes[None, :] + d[:, None]                        # [items, Q]
    ll = grid_log_likelihood(correct, wrong, logits)                         # [learners, Q]
    return torch.logsumexp(ll + log_w, dim=1).sum()


def _fit_torch(r: Tensor, n_quad: int, max_iter: int, tol: float) -> tuple[Tensor, Tensor, dict]:
    nodes, log_w = quadrature_grid(n_quad)
    r = r.double()
    p = torch.nanmean(r, 0).clamp(0.02, 0.98)
    d = torch.logit(p).clone().requires_grad_(True)
    a = torch.ones(r.shape[1], dtype=torch.float64, requires_grad=True)
    ll, iterations = maximise_marginal_likelihood(lambda: marginal_log_likelihood(r, a, d, nodes, log_w), [a, d],
                                                  r.shape[0], max_iter=max_iter, tolerance_grad=tol,
                                                  tolerance_change=1e-12)
    return a.detach(), d.detach(), {"engine": "torch", "iterations": iterations, "loglik_per_learner": ll}


def maximise_marginal_likelihood(log_lik: Callable[[], Tensor], params: list[Tensor], n_learners: int, *,
                                 max_iter: int, tolerance_grad: float, tolerance_change: float) -> tuple[float, int]:
    """Maximise ``log_lik()`` (a marginal log-likelihood over ``params``) with L-BFGS and a strong-Wolfe search.

    The loss is the mean negative log-likelihood per learner. Returns (log-likelihood per learner at the
    optimum, L-BFGS iterations). Shared by the 2PL (chapter 05, section 3) and the MIRT fit (section 8).
    """
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=tolerance_grad,
                            tolerance_change=tolerance_change, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = -log_lik() / n_learners
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        ll = float(log_lik()) / n_learners
    return ll, int(opt.state[opt._params[0]]["n_iter"])


def _fit_irtorch(r: Tensor, device: str) -> tuple[Tensor, Tensor, dict]:
    from irtorch.estimation_algorithms import MML
    from irtorch.models import TwoParameterLogistic

    model = TwoParameterLogistic(items=r.shape[1])
    algo = MML()
    model.fit(train_data=r, algorithm=algo, device=device)
    a = model.weight_param.detach().double().clone()
    d = model.bias_param.detach().double().clone()
    nodes, log_w = quadrature_grid(61)
    with torch.no_grad():
        ll = float(marginal_log_likelihood(r.double(), a, d, nodes, log_w)) / r.shape[0]
    return a, d, {"engine": "irtorch", "iterations": len(algo.training_history["train_loss"]),
                  "loglik_per_learner": ll}


def fit_2pl(responses: Tensor, *, engine: str = "torch", n_quad: int = 61,
            max_iter: int = 300, tol: float = 1e-5, device: str = "cpu") -> ItemParams:
    """Fit 2PL item parameters by marginal maximum likelihood on ``responses [learners, items]``.

    Missing answers (NaN) are left out of the likelihood, not counted as wrong. ``engine="torch"``
    (default) runs L-BFGS on the marginal likelihood over a ``n_quad``-point grid, from a = 1 and
    d = logit(share correct); ``engine="irtorch"`` fits irtorch's ``TwoParameterLogistic`` with ``MML`` (its
    defaults: Adam, 15-point grid on ±3) - slower, the reference the fast fit is tested against.
    Both are deterministic (no seed). Returns `ItemParams` (float32). Derived in chapter 05, section 3.
    """
    from course_lib.data.responses import validate_responses

    r = validate_responses(responses, name="responses")
    if r.shape[0] < 2:
        raise ValueError(f"fitting item parameters needs several learners; got {r.shape[0]}")
    answered = ~torch.isnan(r)
    constant = [j for j in range(r.shape[1])
                if torch.unique(r[answered[:, j], j]).numel() < 2]
    if constant:
        raise ValueError(f"items {constant[:5]} were answered all-correct or all-wrong by the training "
                         "learners, so their difficulty is not identified; drop them or add learners")
    if engine == "torch":
        a, d, info = _fit_torch(r, n_quad, max_iter, tol)
    elif engine == "irtorch":
        a, d, info = _fit_irtorch(r, device)
    else:
        raise ValueError(f"engine must be 'torch' or 'irtorch', got {engine!r}")
    return ItemParams(a=a.float(), b=(-d / a).float(), info=info)


def fit_2pl_by_group(responses: Tensor, groups, **options) -> dict[str, tuple[Tensor, ItemParams]]:
    """One 2PL per item group (e.g. test section): ``{label: (item columns, ItemParams)}``, labels sorted.

    ``groups``: one label per item of ``responses [learners, items]``; learners with no answer in a
    group are left out of that group's fit. ``options`` go to `fit_2pl`. Derived in chapter 05, section 5.
    """
    import numpy as np

    labels = np.asarray(list(groups))
    if len(labels) != responses.shape[1]:
        raise ValueError(f"groups has {len(labels)} labels but responses has {responses.shape[1]} items")
    fitted = {}
    for label in sorted(set(labels.tolist())):
        cols = torch.as_tensor(np.flatnonzero(labels == label))
        sub = responses[:, cols]
        fitted[label] = (cols, fit_2pl(sub[~torch.isnan(sub).all(1)], **options))
    return fitted


def eap_predict_by_group(fitted: dict[str, tuple[Tensor, ItemParams]], n_items: int, items: Tensor,
                         answers: Tensor, mask: Tensor | None, query_items: Tensor) -> Tensor:
    """`eap_predict` with one ability per group (from `fit_2pl_by_group`): each query item is
    predicted from the EAP of its own group's support answers. ``[learners, n]``. Chapter 05, section 5.
    """
    out = torch.zeros(torch.as_tensor(query_items).shape)
    mask = torch.ones_like(items, dtype=torch.bool) if mask is None else mask
    for cols, params in fitted.values():
        local = torch.full((n_items,), -1, dtype=torch.long)
        local[cols] = torch.arange(len(cols))
        ls = local[items]
        theta, _ = eap_ability_batch(params.a, params.b, ls.clamp_min(0), answers, mask & (ls >= 0))
        lq = local[query_items]
        p = torch.sigmoid(params.a[lq.clamp_min(0)] * theta[:, None] + params.d[lq.clamp_min(0)])
        out = torch.where(lq >= 0, p, out)
    return out
