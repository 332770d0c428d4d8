"""Interpretability of a meta-learned learner model: what θ learned, and why one learner got a prediction.

Derived in chapter 09, section 4, on the meta-IRT model of chapter 05 (`course_lib.models.meta_irt`).

*What did θ learn?* `item_parameter_agreement` puts the meta-learned item parameters next to a 2PL
fitted by marginal likelihood: discrimination ‖aⱼ‖ and difficulty bⱼ = −(aⱼ·θ_ability + dⱼ) / ‖aⱼ‖
(the ability at which P = 1/2, measured from the meta-learned prior mean θ_ability), with Pearson and
Spearman correlations. The scales differ (MAML never fixes the ability variance to 1), so only
correlations and orderings are comparable.

*Why this prediction?* After adaptation the prediction for a query item q is a function of the K
support answers y = (y₁ … y_K): p_q(y) = σ(f(x_q; φ(θ, y))), φ = the inner loop on 𝒟ˢ. Two ways to
say which answer moved p_q most:

* `support_gradient`: the exact Jacobian ∂p_q/∂y_k through the inner loop (second order: the
  inner gradient depends on y), by ``torch.func.jacrev``;
* `support_attributions`: Captum's attributions of p_q to the inputs y. ``Saliency`` (signed) is the
  same Jacobian (a test checks it); ``IntegratedGradients`` integrates it from a baseline
  ŷ = σ(f(x_k; θ)), the answers the prior *expected* (at ŷ the inner gradient is zero, so φ = θ),
  so its attributions add up to p_q(y) − p_q(ŷ): how far each answer moved the prediction away from
  the prior's. `why_card` turns them into sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from course_lib.algorithms.maml import inner_adapt

__all__ = ["item_parameter_agreement", "adapted_probability", "expected_answers", "support_gradient",
           "support_attributions", "why_card"]


def item_parameter_agreement(model, params, names: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Meta-learned vs 2PL item parameters: ``(per-item table, correlations)``.

    ``model``: a `MetaIRT` (item_a ``[items, dims]``, item_d ``[items]``, ability ``[dims]``);
    ``params``: `course_lib.baselines.irt.ItemParams` of the same items. The table has
    ``a_2pl, b_2pl, a_meta, b_meta``; the correlations, one row per parameter, ``pearson`` and
    ``spearman``. Derived in chapter 09, section 4.1.
    """
    from scipy import stats

    a = model.item_a.detach().cpu().double()
    d = model.item_d.detach().cpu().double()
    prior = model.ability.detach().cpu().double()
    if a.shape[0] != params.a.shape[0]:
        raise ValueError(f"the meta-IRT model has {a.shape[0]} items but the 2PL has {params.a.shape[0]}; "
                         "fit both on the same response matrix")
    norm = a.norm(dim=1)
    table = pd.DataFrame({"a_2pl": params.a.detach().cpu().numpy(), "b_2pl": params.b.detach().cpu().numpy(),
                          "a_meta": norm.numpy(), "b_meta": (-(a @ prior + d) / norm).numpy()})
    if names is not None:
        table.insert(0, "item", list(names))
    corr = pd.DataFrame([{"parameter": label, "pearson": stats.pearsonr(table[f"{p}_2pl"], table[f"{p}_meta"])[0],
                          "spearman": stats.spearmanr(table[f"{p}_2pl"], table[f"{p}_meta"])[0]}
                         for p, label in (("a", "discrimination"), ("b", "difficulty"))])
    return table, corr


def _check_one_learner(x_support: Tensor, y_support: Tensor, x_query: Tensor) -> None:
    if x_support.dim() != 1 or y_support.shape != x_support.shape or x_query.dim() != 1:
        raise ValueError("give ONE learner: x_support [K], y_support [K] and x_query [n_query] (no task "
                         f"dimension); got {tuple(x_support.shape)}, {tuple(y_support.shape)}, {tuple(x_query.shape)}")


def adapted_probability(learner, x_support: Tensor, y_support: Tensor, x_query: Tensor) -> Tensor:
    """p(y) = σ(f(x_query; φ(θ, y))): ``[n_query]`` after the learner's inner loop on (x_support, y_support).

    Differentiable in ``y_support [K]`` (the inner loop is kept second order). ``learner``: a `MAML`
    (e.g. from `train_per_k_shot`). Derived in chapter 09, section 4.2.
    """
    _check_one_learner(x_support, y_support, x_query)
    theta = {name: v.detach() for name, v in learner.theta.items()}
    rates = {name: a.detach() for name, a in learner.alpha.items()}
    phi = inner_adapt(learner.model, theta, x_support, y_support.float(), None, loss_fn=learner.loss_fn,
                      alpha=rates, steps=learner.steps, first_order=False, adapt=learner.adapt_prefixes)
    return torch.sigmoid(torch.func.functional_call(learner.model, phi, (x_query,)))


def expected_answers(learner, x_support: Tensor) -> Tensor:
    """ŷ = σ(f(x_support; θ)): the answers the meta-learned prior expects, ``[K]`` (the IG baseline)."""
    theta = {name: v.detach() for name, v in learner.theta.items()}
    return torch.sigmoid(torch.func.functional_call(learner.model, theta, (x_support,))).detach()


def support_gradient(learner, x_support: Tensor, y_support: Tensor, x_query: Tensor) -> Tensor:
    """The exact Jacobian ∂p_q/∂y_k of the adapted predictions: ``[n_query, K]`` (torch.func.jacrev)."""
    return torch.func.jacrev(lambda y: adapted_probability(learner, x_support, y, x_query))(y_support.float())


def support_attributions(learner, x_support: Tensor, y_support: Tensor, x_query: Tensor, *,
                         method: str = "integrated_gradients", n_steps: int = 64) -> tuple[Tensor, Tensor]:
    """Captum attributions of each adapted prediction to each support answer: ``([n_query, K], delta)``.

    ``method``: "integrated_gradients" (baseline `expected_answers`; ``delta [n_query]`` is Captum's
    convergence delta, attributions − (p(y) − p(ŷ))) or "saliency" (signed gradient; delta = 0).
    Derived in chapter 09, section 4.2.
    """
    from captum.attr import IntegratedGradients, Saliency

    _check_one_learner(x_support, y_support, x_query)
    one = lambda y: adapted_probability(learner, x_support, y, x_query)  # noqa: E731
    forward = torch.func.vmap(one)                     # [batch, K] -> [batch, n_query]
    y = y_support.float()[None].clone().requires_grad_(True)
    rows, deltas = [], []
    for q in range(len(x_query)):
        if method == "integrated_gradients":
            attr, delta = IntegratedGradients(forward).attribute(
                y, baselines=expected_answers(learner, x_support)[None], target=q, n_steps=n_steps,
                return_convergence_delta=True)
        elif method == "saliency":
            attr, delta = Saliency(forward).attribute(y, target=q, abs=False), torch.zeros(1)
        else:
            raise ValueError(f"method must be 'integrated_gradients' or 'saliency', got {method!r}")
        rows.append(attr[0].detach())
        deltas.append(delta.reshape(-1)[0].detach())
    return torch.stack(rows), torch.stack(deltas)


def why_card(attributions: Tensor, support_names: Sequence[str], y_support: Tensor, query_names: Sequence[str],
             p_adapted: Tensor, p_prior: Tensor, *, top: int = 2, answer_words: tuple[str, str] = ("no", "yes")) -> str:
    """A plain-language "why" card: for each query item, the prediction, how far it moved from the
    prior's, and the ``top`` support answers that moved it most (from ``attributions [n_query, K]``).
    Derived in chapter 09, section 4.3."""
    attributions = torch.as_tensor(attributions)
    if attributions.shape != (len(query_names), len(support_names)):
        raise ValueError(f"attributions must be [n_query, K] = [{len(query_names)}, {len(support_names)}], "
                         f"got {tuple(attributions.shape)}")
    lines = []
    for q, name in enumerate(query_names):
        order = np.argsort(-attributions[q].abs().numpy())[:top]
        reasons = ", ".join(f"your '{answer_words[int(y_support[k] > 0.5)]}' to {support_names[k]} "
                            f"({'+' if attributions[q, k] >= 0 else '−'}{abs(float(attributions[q, k])):.2f})"
                            for k in order)
        moved = float(p_adapted[q] - p_prior[q])
        lines.append(f"• {name}: P({answer_words[1]}) = {float(p_adapted[q]):.2f} "
                     f"({'up' if moved >= 0 else 'down'} {abs(moved):.2f} from {float(p_prior[q]):.2f} before your "
                     f"answers), mostly because of {reasons}.")
    return "\n".join(lines)
