"""Federated meta-learning as plain functions: split learners into clients, update, aggregate.

Derived in chapter 09, section 1. Schools (or regions) are *clients*: each holds its own learners'
answers and never sends them; it receives the global meta-parameters θ, runs E local steps on its
learners, and returns θ_c. The server averages, weighted by the number of learners nᶜ:

    θ ← Σ_c nᶜ θ_c / Σ_c nᶜ.

What the local step is decides the method (`CLIENT_METHODS`):

* ``fedavg`` (McMahan et al. 2017): the plain loss of θ on the client's answers, no inner loop
  (MAML with zero inner steps); a new learner is then fine-tuned from θ (transfer learning).
* ``per_fedavg`` (Fallah, Mokhtari & Ozdaglar 2020): the MAML meta-gradient of
  Fᵢ(θ) = fᵢ(θ − α∇fᵢ(θ)) on the client's learners. The paper approximates the Hessian–vector
  product (its HF variant: finite differences; its FO variant: drops it); here torch.func computes
  the exact one, so this is Per-FedAvg with the exact meta-gradient (``first_order=True`` gives FO).
* ``reptile``: federated Reptile (the local step is Reptile's θ − φ̄ on the client's learners).

The model is chapter 05's `MetaIRT` (θ = item loadings, intercepts and the ability prior); every
local step uses the meta-learners of `course_lib.models.meta_irt`, so nothing is written twice.
`run_federated` is the whole protocol in one process, counting rounds and bytes; the Flower
ClientApp / ServerApp in `course_lib.federated.flower` call the same `client_update` and `aggregate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from course_lib.algorithms import MAML
from course_lib.models.meta_irt import MetaIRT, MetaIRTConfig, make_meta_learner
from course_lib.tasks import learner_tasks

__all__ = ["FedConfig", "CLIENT_METHODS", "SPLITS", "split_clients", "initial_theta", "client_update", "aggregate",
           "payload_bytes", "run_federated", "round_seed"]

Params = dict[str, Tensor]

#: federated method -> the `META_LEARNERS` entry its local step runs (fedavg: MAML with 0 inner steps).
CLIENT_METHODS: dict[str, str] = {"fedavg": "maml", "per_fedavg": "maml", "per_fedavg_fo": "fomaml",
                                  "reptile": "reptile"}
SPLITS = ("ability", "section", "random")


@dataclass(frozen=True)
class FedConfig:
    """Settings of federated meta-training: ``rounds`` communication rounds, ``local_steps`` (E)
    local updates per client and round, each on ``local_batch`` of the client's learners with K
    drawn from ``k_range``; ``local_beta`` the local Adam step (state reset every round: clients
    keep nothing between rounds). ``meta`` holds α, inner steps and dims (chapter 05's `MetaIRTConfig`)."""

    rounds: int = 25
    local_steps: int = 10
    local_batch: int = 16
    local_beta: float = 0.03
    k_range: tuple[int, int] = (1, 20)
    meta: MetaIRTConfig = dataclasses.field(default_factory=MetaIRTConfig)

    def __post_init__(self) -> None:
        bad = [n for n in ("rounds", "local_steps", "local_batch", "local_beta") if not getattr(self, n) > 0]
        if bad:
            raise ValueError(f"FedConfig settings must be > 0; fix {bad}")
        if not 1 <= self.k_range[0] <= self.k_range[1]:
            raise ValueError(f"k_range must be (k_min, k_max) with 1 <= k_min <= k_max, got {self.k_range}")


def split_clients(responses: Tensor, learners: Tensor, n_clients: int, by: str = "ability",
                  groups: Sequence[str] | None = None) -> list[Tensor]:
    """Split ``learners`` into ``n_clients`` non-IID clients (schools); returns one index tensor each.

    ``by="ability"``: sorted by share correct and cut into quantiles (client 0 holds the weakest
    learners, as schools differ in intake); ``by="section"``: sorted by the section profile (share
    correct on the first item group minus the second; needs ``groups``, one label per item);
    ``by="random"``: an IID split (the reference). Derived in chapter 09, section 1.
    """
    if by not in SPLITS:
        raise ValueError(f"unknown client split {by!r}; use one of {SPLITS}")
    learners = torch.as_tensor(learners).long()
    if not 1 <= n_clients <= len(learners):
        raise ValueError(f"n_clients must be between 1 and the {len(learners)} learners, got {n_clients}: "
                         "every client needs at least one learner")
    r = responses[learners]
    if by == "ability":
        key = torch.nanmean(r, 1)
    elif by == "section":
        if groups is None or len(groups) != r.shape[1]:
            raise ValueError("by='section' needs groups: one section label per item (e.g. SweSAT's "
                             "quantitative / verbal)")
        labels = list(dict.fromkeys(groups))
        if len(labels) < 2:
            raise ValueError(f"by='section' needs at least two item groups, got {labels}")
        first = torch.tensor([g == labels[0] for g in groups])
        key = torch.nanmean(r[:, first], 1) - torch.nanmean(r[:, ~first], 1)
    else:
        key = torch.rand(len(learners), generator=torch.Generator().manual_seed(0))
    order = learners[torch.argsort(key.nan_to_num(0.5), stable=True)]
    return [c.sort().values for c in torch.tensor_split(order, n_clients)]


def initial_theta(responses: Tensor, meta: MetaIRTConfig = MetaIRTConfig(), seed: int = 0) -> Params:
    """θ⁰ of `MetaIRT` as the server starts it: loadings near 1, intercepts 0, ability prior 0.

    (Intercepts start at 0, not at the items' share correct, because that would need the clients'
    answers on the server.) Derived in chapter 09, section 1.
    """
    model = MetaIRT(responses.shape[1], meta.dims, seed=seed)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def round_seed(seed: int, round_: int, client: int) -> int:
    """The seed of client ``client``'s draws in round ``round_``: the same in one process and on Flower."""
    return seed * 1_000_003 + round_ * 1009 + client


def client_update(method: str, theta: Params, responses: Tensor, learners: Tensor, config: FedConfig,
                  seed: int) -> tuple[Params, int]:
    """E local steps of ``method`` from θ on one client's learners; returns (θ_c, nᶜ).

    ``responses [learners, items]`` may be the whole matrix: only rows ``learners`` (the client's)
    are read. Each step draws ``config.local_batch`` of them (with replacement) and K answers each.
    Derived in chapter 09, section 1.
    """
    if method not in CLIENT_METHODS:
        raise ValueError(f"unknown federated method {method!r}; choose from {sorted(CLIENT_METHODS)}")
    learners = torch.as_tensor(learners).long()
    if learners.numel() == 0:
        raise ValueError("this client has no learners: give every client at least one learner "
                         "(fewer clients, or check the split)")
    k_min, k_max = config.k_range
    usable = learners[(~torch.isnan(responses[learners])).sum(1) > k_max]
    if usable.numel() == 0:
        raise ValueError(f"no learner of this client has more than k_max = {k_max} answers; lower k_range")
    model = MetaIRT(responses.shape[1], theta["item_a"].shape[1])
    model.load_state_dict(theta)
    if method == "fedavg":         # no inner loop: MAML with zero steps is the plain loss of θ
        learner = MAML(model, loss="bce", alpha=config.meta.alpha, steps=0, adapt=["ability"])
    else:
        learner = make_meta_learner(CLIENT_METHODS[method], model, config.meta)
    opt = torch.optim.Adam(learner.parameters(), lr=config.local_beta)
    g = torch.Generator().manual_seed(seed)
    for _ in range(config.local_steps):
        k_shot = int(torch.randint(k_min, k_max + 1, (1,), generator=g))
        ix = usable[torch.randint(len(usable), (config.local_batch,), generator=g)]
        learner.step(learner_tasks(responses, k_shot, ix, generator=g, max_query=config.meta.max_query), opt)
    return {name: p.detach().clone() for name, p in model.named_parameters()}, int(len(learners))


def aggregate(updates: Sequence[tuple[Params, int]]) -> Params:
    """The server step: θ = Σ_c nᶜ θ_c / Σ_c nᶜ (FedAvg's weighted mean). Derived in chapter 09, section 1."""
    if not updates:
        raise ValueError("no client updates to aggregate")
    total = sum(n for _, n in updates)
    if total <= 0:
        raise ValueError("client sizes must be positive")
    return {name: sum(theta[name] * (n / total) for theta, n in updates) for name in updates[0][0]}


def payload_bytes(theta: Params) -> int:
    """Bytes of one copy of θ on the wire (float32): what a client downloads, and uploads, per round."""
    return int(sum(v.numel() * v.element_size() for v in theta.values()))


def run_federated(method: str, responses: Tensor, clients: Sequence[Tensor], config: FedConfig = FedConfig(),
                  *, seed: int = 0, theta: Params | None = None,
                  on_round: Callable[[int, Params], None] | None = None) -> tuple[Params, dict]:
    """All ``config.rounds`` rounds in one process: every client updates from θ, the server aggregates.

    Returns (θ, log) with ``log = {"rounds", "bytes_sent", "bytes_per_round"}``; bytes count θ down
    to and θ_c up from every client, each round. ``on_round(r, θ)`` is called after each round
    (the notebook's stepper and progress). Derived in chapter 09, section 1.
    """
    for c, learners in enumerate(clients):
        if len(learners) == 0:
            raise ValueError(f"client {c} has no learners: give every client at least one learner")
    theta = initial_theta(responses, config.meta, seed) if theta is None else theta
    per_round = 2 * payload_bytes(theta) * len(clients)
    for r in range(config.rounds):
        updates = [client_update(method, theta, responses, learners, config, round_seed(seed, r, c))
                   for c, learners in enumerate(clients)]
        theta = aggregate(updates)
        if on_round is not None:
            on_round(r, theta)
    return theta, {"rounds": config.rounds, "bytes_sent": per_round * config.rounds, "bytes_per_round": per_round}
