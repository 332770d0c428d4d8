"""Every experiment's small configuration: same seed, byte-identical results JSON; and no network.

The studies are found by walking course_lib.experiments (every module with ``Config`` and ``run``), so a
new study is checked as soon as it exists; it needs an entry in SMALL below (a configuration that runs
in seconds), and the test says so if it has none. Each study runs twice with the same seed, with every
socket except loopback blocked (pytest-socket), and ``save_json(..., timing=False)`` must write the same
bytes both times.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import socket

import pytest

import course_lib.experiments as experiments
from course_lib.experiments.common import save_json
from course_lib.models.meta_irt import MetaIRTConfig

STUDIES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                 if m.name != "common" and hasattr(importlib.import_module(f"course_lib.experiments.{m.name}"), "run"))
TINY_META = MetaIRTConfig(dims=1, iterations=5, warm_iterations=3, meta_batch=8, max_query=10)
# A configuration per study that runs in seconds (settings from each study's own tests).
SMALL = {
    "adaptive_testing": dict(n_steps=4, seed=0, n_synthetic=60, n_boot=5, meta=MetaIRTConfig(iterations=3),
                             methods=("random (2PL IRT)", "max Fisher information (2PL IRT)")),
    "cold_start": dict(dataset="synthetic", k_shots=(1, 3), methods=("item_mean", "irt_2pl_eap", "maml"), seed=0,
                       meta=TINY_META, n_boot=10),
    "fairness": dict(parts=("verbagg",), k_shots=(3,), folds=2, methods=("item_mean", "maml", "maml_balanced"),
                     n_boot=5, meta=MetaIRTConfig(iterations=3, warm_iterations=1, meta_batch=16)),
    "federated": dict(methods=("fedavg", "centralised_maml"), k_shots=(5,), rounds=1, local_steps=1, local_batch=4,
                      n_boot=5),
    "privacy": dict(epsilons=(3.0, math.inf), iterations=3, seeds=(0,), k_shots=(5,), n_boot=5),
    "distillation": dict(ks=(1, 3), methods=("item_mean", "teacher", "student_amortized"), teacher_iterations=4),
    "learning_paths": dict(n_past=120, past_horizon=40, n_test=60, horizon=30, n_hypotheses=16, pybkt_learners=0, seed=0),
    "lookahead": dict(n_past=40, past_horizon=20, n_test=20, horizon=15, n_hypotheses=8, depths=(1, 3), all_depth=0),
    "personalization": dict(n_learners=200, n_items=40, k_shots=(1, 4), n_query=8, maml_iterations=12,
                            maml_meta_batch=8),
    "protomaml_shift": dict(iterations=4, n_test=12, n_boot=5, k_shots=(1, 2), meta_batch=4, steps=1),
    "recommendation": dict(iterations=20, validate_every=10, meta_batch=8, k_shots=(1, 5), test_steps=(0, 1),
                           variants=("MAML",)),
    "sinusoid": dict(iterations=20, meta_batch=4, ks=(5,), steps=(1,), n_test=10, n_query_test=10),
    "text_resources": dict(n_train=60, n_validation=20, n_test=30, iterations=10, meta_batch=8, k_shots=(1, 5)),
    "tutoring_feedback": dict(n_past=100, past_errors=10, n_test=100, n_errors=6),
}


# pytest-socket: while these tests run, a connection to any host but loopback raises SocketConnectBlockedError.
pytestmark = pytest.mark.allow_hosts(["127.0.0.1", "::1"])


def test_network_is_really_blocked():
    with pytest.raises(Exception, match="(?i)socket|host"):
        socket.create_connection(("93.184.216.34", 80), timeout=2)


@pytest.mark.parametrize("study", STUDIES)
def test_same_seed_gives_byte_identical_json_offline(study, tmp_path):
    assert study in SMALL, (f"course_lib.experiments.{study} has no small configuration: add one to SMALL in "
                            f"{__file__} (settings that run in seconds)")
    module = importlib.import_module(f"course_lib.experiments.{study}")
    fields = {f.name for f in dataclasses.fields(module.Config)}
    overrides = {k: v for k, v in SMALL[study].items() if k in fields}
    config = module.Config(**overrides)
    paths = []
    for i in range(2):
        result = module.run(config, progress=False, device="cpu") if "device" in module.run.__code__.co_varnames \
            else module.run(config, progress=False)
        paths.append(save_json(result, tmp_path / f"{study}-{i}.json", timing=False))
    first, second = (p.read_bytes() for p in paths)
    assert first == second, f"{study}: two runs with seed {getattr(config, 'seed', '?')} wrote different JSON"
