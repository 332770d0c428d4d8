"""BOBCAT: a question-selection policy meta-learned jointly with the response model (bilevel CAT).

Derived in chapter 07, section 4b (Ghosh & Lan, IJCAI 2021, "BOBCAT: Bilevel Optimization-Based
Computerized Adaptive Testing"). A training learner i has answered a pool of items and a held-out
set Γᵢ. A policy π(· | sᵢ⁽ᵗ⁾; ψ) reads what the learner answered so far and picks the next item
jₜ; after n picks the learner's parameters are adapted on the chosen answers, and the held-out loss
is what both levels minimise:

    min_{θ, ψ}  Eᵢ E_{j₁..jₙ ∼ π}  ℓ(Γᵢ; φᵢ*)       (outer: held-out answers of the same learner)
    φᵢ* = argmin_φ  Σₜ ℓ(y_{i,jₜ}; φ, θ) + ½ (φ − μ)ᵀ Λ (φ − μ)    (inner: the chosen answers).

Here θ = (item loadings aⱼ, intercepts dⱼ, prior mean μ, prior precision Λ) of a multidimensional
2PL (chapter 05's `MetaIRT` with a learned prior instead of a fixed number of gradient steps); the
inner problem is convex and `ResponseModel.adapt` solves it with a few Newton steps (`newton_step`,
checked against ``torch.func.grad`` / ``hessian`` of `_inner_objective` in the tests), unrolled so the
outer loss is differentiable in θ *and* in the weight wⱼ of every answer in the inner sum. The MAP
with a Laplace predictive is one choice of inner level (``posterior="laplace"``); the other,
``posterior="grid"``, replaces the argmin by the Bayesian answer to the same problem: the exact
posterior N(μ, Λ⁻¹) · Πₜ P(y_{jₜ} | φ)^{w_{jₜ}} on a grid of φ, whose predictive E[σ(aⱼ·φ + dⱼ) | answers]
is what the outer loss scores (`grid_posterior`; the per-section 2PL's EAP is the 1-D case). After one
answer the Laplace approximation of that posterior is poor, and that is where BOBCAT lost (chapter 07).

The gradient with respect to the policy ψ uses BOBCAT's approximate estimator: the chosen item
enters the inner sum with weight w = one_hot(j) − π.detach() + π (straight-through), so the
forward pass is exactly the hard choice and the backward pass gives Σₖ ∂ℓ/∂wₖ ∇_ψ πₖ — the first-order
effect of *adding* item k to the support set, for every k. It is biased (exact when the loss is
linear in w), but it has no REINFORCE variance: one backward pass scores every candidate item,
which is what a 2-core CPU can afford. As in the reference code, the items picked before step t
are data at step t (greedy credit), and training picks jₜ ∼ π (Gumbel-max) while testing is greedy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from course_lib.data.responses import validate_responses

__all__ = ["BOBCATConfig", "ResponseModel", "SelectionPolicy", "straight_through", "bilevel_loss",
           "BOBCAT", "train_bobcat", "newton_step", "POSTERIORS"]

#: the inner level: MAP by Newton + Laplace predictive, or the exact posterior on a grid of φ
POSTERIORS = ("laplace", "grid")


@dataclass(frozen=True)
class BOBCATConfig:
    """Settings of `train_bobcat`: ``dims`` ability dimensions, ``newton_steps`` inner Newton steps,
    ``n_steps`` questions per training test, policy MLP width ``hidden``, ``batch`` learners per
    iteration, ``iterations`` outer steps of Adam with step ``beta`` (β, response model) and
    ``policy_beta`` (policy), ``holdout_frac`` of each training learner's answers held out (Γᵢ),
    ``posterior`` the inner level (one of `POSTERIORS`) with ``grid_points`` nodes per dimension."""

    dims: int = 2
    newton_steps: int = 3
    n_steps: int = 10
    hidden: int = 256
    batch: int = 64
    iterations: int = 150
    beta: float = 0.01
    policy_beta: float = 0.003
    holdout_frac: float = 0.2
    posterior: str = "laplace"
    grid_points: int = 31

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if f.name != "posterior" and not getattr(self, f.name) > 0]
        if bad or self.holdout_frac >= 1:
            raise ValueError(f"BOBCATConfig settings must be > 0 (holdout_frac < 1); fix {bad or ['holdout_frac']}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"BOBCATConfig.posterior must be one of {POSTERIORS}, got {self.posterior!r}")


# ----------------------------------------------------------------------------- response model (inner level)

def _inner_objective(phi: Tensor, w: Tensor, y: Tensor, a: Tensor, d: Tensor, mu: Tensor, prec: Tensor) -> Tensor:
    """Σⱼ wⱼ ℓ(yⱼ; aⱼ·φ + dⱼ) + ½ (φ − μ)ᵀ Λ (φ − μ) for one learner (φ ``[dims]``, w, y ``[items]``)."""
    z = a @ phi + d
    diff = phi - mu
    return (w * F.binary_cross_entropy_with_logits(z, y, reduction="none")).sum() + 0.5 * diff @ prec @ diff


def newton_step(phi: Tensor, weights: Tensor, answers: Tensor, a: Tensor, d: Tensor, mu: Tensor,
                prec: Tensor) -> tuple[Tensor, Tensor]:
    """One Newton step on `_inner_objective` for every learner: φ − H⁻¹g, and H ``[L, dims, dims]``.

    g = Aᵀ(w ⊙ (p − y)) + Λ(φ − μ), H = Aᵀ diag(w ⊙ p(1 − p)) A + Λ, written out in batch because
    ``vmap(hessian)`` of the same objective (the test checks they agree) is ~6x slower on a CPU.
    ``phi [L, dims]``, ``weights``/``answers [L, items]``. Chapter 07, section 4b.
    """
    p = torch.sigmoid(phi @ a.T + d)
    g = (weights * (p - answers)) @ a + (phi - mu) @ prec
    h = torch.einsum("lj,jd,je->lde", weights * p * (1 - p), a, a) + prec
    return phi - torch.linalg.solve(h, g.unsqueeze(-1)).squeeze(-1), h


class ResponseModel(nn.Module):
    """Multidimensional 2PL whose learner ability φᵢ is inferred under a learned Gaussian prior.

    θ: ``item_a [items, dims]``, ``item_d [items]``, prior mean ``mu [dims]`` and a lower-triangular
    ``prior_chol [dims, dims]`` (Λ = LLᵀ + 10⁻³ I). The inner level is one of `POSTERIORS`:
    ``"laplace"``: φᵢ* is the MAP (``newton_steps`` Newton steps), its covariance the Laplace H⁻¹
    and the predictive P(correct) σ(z / √(1 + π aᵀH⁻¹a / 8)); ``"grid"``: the exact posterior on
    ``grid_points``^dims nodes φ_q = μ + C u_q (CCᵀ = Λ⁻¹, u on ±5 per dimension), φ̂ its mean and
    the predictive Σ_q post_q σ(aⱼ·φ_q + dⱼ) — Bayes' answer, which the MAP misses after one or two
    answers. `infer` returns (φ̂, covariance, predictive) for either. Chapter 07, section 4b.
    """

    GRID_WIDTH = 5.0

    def __init__(self, n_items: int, dims: int = 2, *, init_d: Tensor | None = None, seed: int = 0,
                 newton_steps: int = 4, posterior: str = "laplace", grid_points: int = 31) -> None:
        super().__init__()
        if n_items < 1 or dims < 1 or newton_steps < 1:
            raise ValueError(f"need n_items, dims, newton_steps >= 1, got {n_items}, {dims}, {newton_steps}")
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
        if posterior == "grid" and not (3 <= grid_points and grid_points ** dims <= 20_000):
            raise ValueError(f"posterior='grid' needs 3 <= grid_points and grid_points**dims <= 20000 "
                             f"(got {grid_points}**{dims}); use fewer points or posterior='laplace'")
        g = torch.Generator().manual_seed(seed)
        self.item_a = nn.Parameter((1.0 + 0.5 * torch.randn(n_items, dims, generator=g)) / dims ** 0.5)
        self.item_d = nn.Parameter(torch.zeros(n_items) if init_d is None else torch.as_tensor(init_d).float().clone())
        self.mu = nn.Parameter(torch.zeros(dims))
        self.prior_chol = nn.Parameter(torch.eye(dims))
        self.newton_steps, self.posterior = newton_steps, posterior
        u = torch.linspace(-self.GRID_WIDTH, self.GRID_WIDTH, grid_points if posterior == "grid" else 1)
        u = torch.cartesian_prod(*[u] * dims).reshape(-1, dims)
        self.register_buffer("grid_u", u)                                     # [Q, dims], standard-normal units
        self.register_buffer("grid_logw", torch.log_softmax(-0.5 * (u * u).sum(1), 0))

    def with_posterior(self, posterior: str, grid_points: int = 31) -> ResponseModel:
        """The same θ with another inner level (one of `POSTERIORS`): an ablation of the inference alone."""
        other = ResponseModel(len(self.item_d), len(self.mu), newton_steps=self.newton_steps, posterior=posterior,
                              grid_points=grid_points).to(self.item_d.dtype)
        other.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("grid_")}, strict=False)
        return other.eval()

    @property
    def precision(self) -> Tensor:
        """Λ = LLᵀ + 10⁻³ I ``[dims, dims]`` (positive definite for any L)."""
        chol = torch.tril(self.prior_chol)
        return chol @ chol.T + 1e-3 * torch.eye(len(self.mu), dtype=chol.dtype)

    def adapt(self, weights: Tensor, answers: Tensor) -> tuple[Tensor, Tensor]:
        """Inner level on the weighted answers ``[L, items]``: φ̂ ``[L, dims]`` and its covariance ``[L, dims, dims]``.

        ``weights`` is 1 for an asked item and 0 otherwise (any real weight during training);
        ``answers`` must be finite where the weight is not 0. Laplace: ``newton_steps`` Newton steps
        from μ to the MAP φ*, and H⁻¹ at φ*; grid: the posterior mean and covariance. Differentiable
        in θ and ``weights``.
        """
        return self.infer(weights, answers)[:2]

    def infer(self, weights: Tensor, answers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(φ̂ ``[L, dims]``, its covariance ``[L, dims, dims]``, predictive P(correct) ``[L, items]``)."""
        if self.posterior == "grid":
            post, nodes, p_nodes = self.grid_posterior(weights, answers)
            phi = post @ nodes
            centred = nodes - phi[:, None]                                     # [L, Q, dims]
            cov = torch.einsum("lq,lqd,lqe->lde", post, centred, centred)
            return phi, cov, post @ p_nodes
        prec = self.precision
        phi = self.mu.expand(len(weights), -1)
        for _ in range(self.newton_steps):
            phi, _ = newton_step(phi, weights, answers, self.item_a, self.item_d, self.mu, prec)
        _, h = newton_step(phi, weights, answers, self.item_a, self.item_d, self.mu, prec)
        cov = torch.linalg.inv(h)
        return phi, cov, self.prob(phi, cov)

    def grid_posterior(self, weights: Tensor, answers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact posterior on the grid: ``post [L, Q]`` ∝ N(φ_q; μ, Λ⁻¹) Πⱼ P(yⱼ | φ_q)^{wⱼ}, the nodes φ_q
        ``[Q, dims]`` and P(correct) at every node ``[Q, items]``. Chapter 07, section 4b."""
        chol = torch.linalg.cholesky(torch.linalg.inv(self.precision))
        nodes = self.mu + self.grid_u @ chol.T
        z = nodes @ self.item_a.T + self.item_d
        loglik = (weights * answers) @ F.logsigmoid(z).T + (weights * (1 - answers)) @ F.logsigmoid(-z).T
        return torch.softmax(self.grid_logw + loglik, 1), nodes, torch.sigmoid(z)

    def prob(self, phi: Tensor, cov: Tensor) -> Tensor:
        """Predictive P(correct) of every item ``[L, items]`` (probit approximation of the Laplace posterior)."""
        z = phi @ self.item_a.T + self.item_d
        var = torch.einsum("jd,lde,je->lj", self.item_a, cov, self.item_a)
        return torch.sigmoid(z / torch.sqrt(1 + math.pi * var / 8))

    def information(self, phi: Tensor, cov: Tensor) -> Tensor:
        """pⱼ(1 − pⱼ) aⱼᵀ H⁻¹ aⱼ ``[L, items]``: how much item j would tell about the still uncertain φ."""
        p = torch.sigmoid(phi @ self.item_a.T + self.item_d)
        return p * (1 - p) * torch.einsum("jd,lde,je->lj", self.item_a, cov, self.item_a)

    def bank_information(self, phi: Tensor, cov: Tensor, asked: Tensor) -> Tensor:
        """Share of the bank's predictive uncertainty that item j's answer is expected to remove ``[L, items]``.

        The outer loss scores a random subset Γᵢ of the learner's items, so in expectation it scores
        the whole bank. Answering j (information Iⱼ = pⱼ(1 − pⱼ)) turns the covariance Σ into
        Σ − Iⱼ Σaⱼaⱼᵀ Σ / (1 + Iⱼ aⱼᵀΣaⱼ); summed over the items k not yet ``asked`` ``[L, items]``
        (nonzero = asked) with weight Iₖ, the logit variance drops by
        Iⱼ aⱼᵀ Σ M Σ aⱼ / (1 + Iⱼ aⱼᵀΣaⱼ), M = Σₖ Iₖ aₖaₖᵀ, divided here by Σₖ Iₖ aₖᵀΣaₖ. Unlike
        `information` (about φ), it prefers the dimension that the most still-unknown answers load on.
        Chapter 07, section 4b.
        """
        p = torch.sigmoid(phi @ self.item_a.T + self.item_d)
        info = p * (1 - p)
        w = info * (asked.detach() < 0.5)
        m = torch.einsum("lk,kd,ke->lde", w, self.item_a, self.item_a)
        smsig = cov @ m @ cov
        gain = info * torch.einsum("jd,lde,je->lj", self.item_a, smsig, self.item_a)
        quad = torch.einsum("jd,lde,je->lj", self.item_a, cov, self.item_a)
        total = torch.einsum("lde,led->l", cov, m).clamp_min(1e-12)
        return gain / (1 + info * quad) / total[:, None]


# ----------------------------------------------------------------------------- policy (selection)

class SelectionPolicy(nn.Module):
    """π(· | s; ψ): scores ``[L, items]`` = κ · infoⱼ + MLP(s, φ̂).

    s ∈ {−1, 0, +1}^items are the answers so far (wrong / not asked / right), φ̂ ``[L, dims]`` the
    current ability and infoⱼ the response model's `ResponseModel.bank_information`: the share of the
    bank's predictive uncertainty the answer is expected to remove (the Bayes-greedy rule for the
    bilevel objective). The MLP's last layer starts at zero and κ at ``kappa``, so an untrained
    policy *is* that rule and training learns the correction that helps the held-out prediction
    (BOBCAT's policy is the MLP alone; starting from the greedy rule is what lets it train in
    minutes on a CPU). κ = 40 makes the starting softmax about as peaked as κ = 10 made it on the
    ability information (their spreads over the SweSAT bank differ about fourfold). Chapter 07, section 4b.
    """

    def __init__(self, n_items: int, dims: int, hidden: int = 256, seed: int = 0, kappa: float = 40.0) -> None:
        super().__init__()
        with torch.random.fork_rng():             # seeded initial weights, global RNG untouched
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(n_items + dims, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                     nn.Tanh(), nn.Linear(hidden, n_items))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.kappa = nn.Parameter(torch.tensor(float(kappa)))

    def forward(self, state: Tensor, phi: Tensor, info: Tensor) -> Tensor:
        return self.kappa * info + self.net(torch.cat([state, phi], 1))


def straight_through(scores: Tensor, available: Tensor, generator: torch.Generator | None = None,
                     sample: bool = True) -> tuple[Tensor, Tensor]:
    """Pick one available item per learner; return its one-hot weight with the gradient of π and the item.

    π = softmax(scores) over ``available [L, items]`` (bool); the item is drawn from π (Gumbel-max,
    ``sample=True``) or its argmax; the weight is one_hot − π.detach() + π: forward value the hard
    choice, gradient that of π (BOBCAT's approximate estimator). Chapter 07, section 4b.
    """
    if available.dtype != torch.bool or available.shape != scores.shape:
        raise ValueError(f"available must be a bool mask of shape {tuple(scores.shape)}")
    if not available.any(1).all():
        raise ValueError("some learner has no item left to pick; lower n_steps or enlarge the pool")
    pi = torch.softmax(scores.masked_fill(~available, -torch.inf), 1)
    keys = pi.detach().log()
    if sample:
        u = torch.rand(pi.shape, generator=generator).clamp_min(1e-12)
        keys = keys - torch.log(-torch.log(u))
    j = keys.masked_fill(~available, -torch.inf).argmax(1)
    hard = F.one_hot(j, pi.shape[1]).to(pi.dtype)
    return hard - pi.detach() + pi, j


# ----------------------------------------------------------------------------- the bilevel objective

def bilevel_loss(model: ResponseModel, policy: SelectionPolicy, answers: Tensor, pool: Tensor, heldout: Tensor,
                 n_steps: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mean over t = 1..n_steps of the held-out loss after adapting on the first t picks.

    ``answers [L, items]`` 0/1 (anything finite outside ``pool | heldout``), ``pool`` / ``heldout``
    bool masks. Returns the loss (differentiable in θ and, through the straight-through weights, in
    ψ) and the per-step held-out losses ``[n_steps]`` (detached). Chapter 07, section 4b.
    """
    L, _ = answers.shape
    rows = torch.arange(L)
    available, state = pool.clone(), torch.zeros_like(answers)
    weights = torch.zeros_like(answers)
    with torch.no_grad():
        phi, cov = model.adapt(weights, answers)
    n_held = heldout.sum().clamp_min(1)
    losses = []
    for _ in range(n_steps):
        info = model.bank_information(phi, cov, weights).detach()
        w, j = straight_through(policy(state, phi.detach(), info), available, generator)
        weights = weights.detach() + w          # earlier picks are data at this step (greedy credit)
        phi, cov, p = model.infer(weights, answers)
        p = p.clamp(1e-6, 1 - 1e-6)
        losses.append((F.binary_cross_entropy(p, answers, reduction="none") * heldout).sum() / n_held)
        available = available.clone()
        available[rows, j] = False
        state = state.clone()
        state[rows, j] = 2 * answers[rows, j] - 1
    stacked = torch.stack(losses)
    return stacked.mean(), stacked.detach()


# ----------------------------------------------------------------------------- the tester

class BOBCAT:
    """A trained response model and policy, playing a test through the `course_lib.adaptive.cat.CATModel`
    protocol (``begin``/``observe``/``predict``/``information``) plus ``policy_scores`` for the
    ``"learned_policy"`` rule. Chapter 07, section 4b."""

    def __init__(self, model: ResponseModel, policy: SelectionPolicy, name: str = "BOBCAT",
                 information: str = "ability") -> None:
        if information not in ("ability", "bank"):
            raise ValueError(f"information must be 'ability' or 'bank', got {information!r}")
        self.model, self.policy, self.name, self.information_kind = model, policy, name, information
        self.n_items = model.item_a.shape[0]

    def begin(self, n_learners: int) -> dict:
        """No answers yet: φ = μ, covariance Λ⁻¹."""
        zeros = torch.zeros(n_learners, self.n_items)
        with torch.no_grad():
            phi, cov, prob = self.model.infer(zeros, zeros)
        return {"weights": zeros, "answers": zeros.clone(), "phi": phi, "cov": cov, "prob": prob}

    def observe(self, state: dict, item: Tensor, answer: Tensor) -> dict:
        """Add one answer per learner and re-solve the inner problem on every answer so far."""
        item = torch.as_tensor(item).long()
        if item.shape != (len(state["phi"]),) or int(item.min()) < 0 or int(item.max()) >= self.n_items:
            raise ValueError(f"item must hold one index in [0, {self.n_items}) per learner")
        rows = torch.arange(len(item))
        weights, answers = state["weights"].clone(), state["answers"].clone()
        if weights[rows, item].any():
            raise ValueError("an item was asked twice; BOBCAT counts each answer once")
        weights[rows, item] = 1.0
        answers[rows, item] = torch.as_tensor(answer).float()
        with torch.no_grad():
            phi, cov, prob = self.model.infer(weights, answers)
        return {"weights": weights, "answers": answers, "phi": phi, "cov": cov, "prob": prob}

    def predict(self, state: dict) -> Tensor:
        """Predictive P(correct) ``[L, items]`` (the response model's `ResponseModel.infer`)."""
        return state["prob"]

    def information(self, state: dict) -> Tensor:
        """What the max-information rule ranks by ``[L, items]``: p(1 − p) aⱼᵀΣaⱼ at φ̂ (``information="ability"``)
        or `ResponseModel.bank_information` (``"bank"``, the policy's starting rule)."""
        with torch.no_grad():
            if self.information_kind == "bank":
                return self.model.bank_information(state["phi"], state["cov"], state["weights"])
            return self.model.information(state["phi"], state["cov"])

    def policy_scores(self, state: dict) -> Tensor:
        """The policy's score of every item ``[L, items]`` (argmax over what is left = greedy pick)."""
        s = state["weights"] * (2 * state["answers"] - 1)
        with torch.no_grad():
            info = self.model.bank_information(state["phi"], state["cov"], state["weights"])
            return self.policy(s, state["phi"], info)


def _random_split(answered: Tensor, holdout_frac: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    keys = torch.rand(answered.shape, generator=g).masked_fill(~answered, 2.0)
    rank = keys.argsort(1).argsort(1)
    n_hold = (answered.sum(1, keepdim=True) * holdout_frac).round().clamp_min(1)
    heldout = answered & (rank < n_hold)
    return answered & ~heldout, heldout


def train_bobcat(responses: Tensor, learners: Tensor, config: BOBCATConfig = BOBCATConfig(), *, seed: int = 0,
                 init: tuple[Tensor, Tensor] | None = None, progress: bool = True) -> BOBCAT:
    """Train θ and ψ jointly on the ``learners`` (rows of ``responses [learners, items]``, NaN = missing).

    Every iteration draws ``config.batch`` learners, splits each one's answers at random into a pool
    and a held-out ``holdout_frac``, plays an ``n_steps`` test with the policy and takes one Adam
    step on `bilevel_loss`. Learners need more than ``n_steps / (1 − holdout_frac)`` answers.
    ``init = (item_a [items, dims], item_d [items])`` starts θ from fitted IRT parameters (e.g. a
    2PL per test section, one dimension per section); by default θ starts from the items' share
    correct and random loadings. Returns the `BOBCAT` tester. Derived in chapter 07, section 4b.
    """
    r = validate_responses(responses, name="responses")
    learners = torch.as_tensor(learners).long()
    if learners.dim() != 1 or len(learners) == 0:
        raise ValueError("learners must be a non-empty 1-D tensor of row indices")
    answered = ~torch.isnan(r[learners])
    usable = learners[answered.sum(1) * (1 - config.holdout_frac) > config.n_steps]
    if len(usable) == 0:
        raise ValueError(f"no learner answered enough items for n_steps={config.n_steps}; lower n_steps")
    p = torch.nanmean(r[usable], 0).nan_to_num(0.5).clamp(0.02, 0.98)
    model = ResponseModel(r.shape[1], config.dims, init_d=torch.logit(p), seed=seed,
                          newton_steps=config.newton_steps, posterior=config.posterior,
                          grid_points=config.grid_points)
    if init is not None:
        a0, d0 = (torch.as_tensor(v, dtype=torch.float32) for v in init)
        if a0.shape != model.item_a.shape or d0.shape != model.item_d.shape:
            raise ValueError(f"init must be (item_a {tuple(model.item_a.shape)}, item_d {tuple(model.item_d.shape)}), "
                             f"got {tuple(a0.shape)} and {tuple(d0.shape)}")
        with torch.no_grad():
            model.item_a.copy_(a0)
            model.item_d.copy_(d0)
    policy = SelectionPolicy(r.shape[1], config.dims, config.hidden, seed=seed)
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": config.beta},
                            {"params": policy.parameters(), "lr": config.policy_beta}])
    g = torch.Generator().manual_seed(seed)
    steps = range(config.iterations)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="BOBCAT meta-training", leave=False)
    for _ in steps:
        ix = usable[torch.randint(len(usable), (config.batch,), generator=g)]
        pool, heldout = _random_split(~torch.isnan(r[ix]), config.holdout_frac, g)
        loss, _ = bilevel_loss(model, policy, r[ix].nan_to_num(0.0), pool, heldout, config.n_steps, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return BOBCAT(model.eval(), policy.eval())
