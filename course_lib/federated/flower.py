"""The same federated meta-learning on Flower: a ClientApp / ServerApp pair (chapter 09, section 1).

`course_lib.federated.core` runs the protocol in one loop; a real deployment runs it on Flower
(flwr), where each school is a SuperNode running the *ClientApp* next to its data and the server
runs the *ServerApp*, which only ever sees parameters. Both apps here call the very functions of
`core`: the ClientApp's ``train`` handler is `core.client_update`, the ServerApp's loop is
`core.aggregate`, so Flower with the same seed gives the same θ as `core.run_federated` (a test
checks two rounds, to the bit).

`run_flower` runs the pair in Flower's Simulation Engine (``flwr.simulation.run_simulation``: an
in-memory SuperLink, one virtual SuperNode per client, messages as ``ArrayRecord`` /
``ConfigRecord``). Flower ships one simulation backend, Ray, which the course does not install
(heavy; its extra pins); `InProcessBackend` is a minimal backend that runs each ClientApp call
in the simulation's own worker thread, registered under the name ``"inprocess"``. Everything
else (SuperLink state, message routing, node ids, ``partition-id`` node config) is Flower's own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig, supported_backends
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation
from torch import Tensor

from course_lib.federated.core import FedConfig, aggregate, client_update, initial_theta, payload_bytes, round_seed

__all__ = ["make_client_app", "make_server_app", "run_flower", "InProcessBackend"]

Params = dict[str, Tensor]


class InProcessBackend(Backend):
    """A Flower Simulation Engine backend without Ray: runs the ClientApp in the engine's worker thread."""

    def __init__(self, backend_config: BackendConfig | None = None) -> None:
        self.app_fn: Callable | None = None

    def build(self, app_fn: Callable) -> None:
        self.app_fn = app_fn

    @property
    def num_workers(self) -> int:
        return 1

    def is_worker_idle(self) -> bool:
        return True

    def terminate(self) -> None:
        self.app_fn = None

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        return self.app_fn()(message, context), context


def _register_backend() -> str:
    """Register `InProcessBackend` with Flower's Simulation Engine (idempotent); returns its name."""
    supported_backends.setdefault("inprocess", InProcessBackend)
    return "inprocess"


def make_client_app(method: str, responses: Tensor, clients: Sequence[Tensor], config: FedConfig):
    """A ClientApp whose ``train`` handler runs `client_update` on its SuperNode's learners.

    The SuperNode's ``partition-id`` (node config) picks its learners from ``clients`` (in a
    deployment each node would load only its own school's answers). The message carries θ
    (``ArrayRecord`` "theta") and {round, seed} (``ConfigRecord`` "config"); the reply carries θ_c
    and {num-examples, partition-id} (``MetricRecord`` "metrics"). Derived in chapter 09, section 1.
    """
    app = ClientApp()

    @app.train()
    def train(msg, context):
        pid = int(context.node_config["partition-id"])
        theta = msg.content["theta"].to_torch_state_dict()
        cfg = msg.content["config"]
        theta_c, n = client_update(method, theta, responses, clients[pid], config,
                                   round_seed(int(cfg["seed"]), int(cfg["round"]), pid))
        content = RecordDict({"theta": ArrayRecord(torch_state_dict=theta_c),
                              "metrics": MetricRecord({"num-examples": n, "partition-id": pid})})
        return Message(content=content, reply_to=msg)

    return app


def make_server_app(theta: Params, rounds: int, seed: int, n_clients: int, out: dict,
                    on_round: Callable[[int, Params], None] | None = None, wait_s: float = 60.0):
    """A ServerApp that runs ``rounds`` rounds from θ: send θ to every node, `aggregate` the replies.

    Replies are ordered by partition id before averaging (the same order as the in-process loop,
    so the sums are bit-identical); the server first waits (up to ``wait_s``) until ``n_clients``
    SuperNodes have connected. Writes ``out["theta"]`` and ``out["bytes_sent"]`` (θ down and
    θ_c up, as serialised by Flower's ``ArrayRecord``). Derived in chapter 09, section 1.
    """
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        nonlocal theta
        deadline = time.monotonic() + wait_s
        while len(nodes := sorted(grid.get_node_ids())) < n_clients:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(nodes)} of {n_clients} SuperNodes connected within {wait_s} s")
            time.sleep(0.1)
        sent = 0
        for r in range(rounds):
            record = ArrayRecord(torch_state_dict=theta)
            messages = [Message(RecordDict({"theta": record, "config": ConfigRecord({"round": r, "seed": seed})}),
                                dst_node_id=node, message_type=MessageType.TRAIN, group_id=str(r)) for node in nodes]
            replies = list(grid.send_and_receive(messages))
            errors = [m.error for m in replies if m.has_error()]
            if errors or len(replies) != len(nodes):
                raise RuntimeError(f"round {r}: {len(replies)} of {len(nodes)} clients replied; errors: {errors}")
            replies.sort(key=lambda m: int(m.content["metrics"]["partition-id"]))
            updates = [(m.content["theta"].to_torch_state_dict(), int(m.content["metrics"]["num-examples"]))
                       for m in replies]
            sent += sum(record.count_bytes() + m.content["theta"].count_bytes() for m in replies)
            theta = aggregate(updates)
            if on_round is not None:
                on_round(r, theta)
        out["theta"], out["bytes_sent"] = theta, sent

    return app


def run_flower(method: str, responses: Tensor, clients: Sequence[Tensor], config: FedConfig = FedConfig(), *,
               seed: int = 0, theta: Params | None = None, verbose: bool = False) -> tuple[Params, dict]:
    """`core.run_federated` on Flower's Simulation Engine: one virtual SuperNode per client.

    Returns (θ, log) like `run_federated`; ``log["bytes_sent"]`` is what Flower serialised
    (``log["payload_bytes"]`` the raw float32 size of θ, for comparison). Derived in chapter 09, section 1.
    """
    for c, learners in enumerate(clients):
        if len(learners) == 0:
            raise ValueError(f"client {c} has no learners: give every client at least one learner")
    theta = initial_theta(responses, config.meta, seed) if theta is None else theta
    out: dict = {}
    loggers = [logging.getLogger(name) for name in ("flwr", "alembic")]  # Flower's state DB logs via alembic
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        run_simulation(make_server_app(theta, config.rounds, seed, len(clients), out),
                       make_client_app(method, responses, list(clients), config),
                       num_supernodes=len(clients), backend_name=_register_backend(),
                       backend_config={"client_resources": {"num_cpus": 1}})
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    if "theta" not in out:
        raise RuntimeError("the Flower run ended without a result; run again with verbose=True to see Flower's log")
    return out["theta"], {"rounds": config.rounds, "bytes_sent": out["bytes_sent"],
                          "payload_bytes": payload_bytes(out["theta"])}
