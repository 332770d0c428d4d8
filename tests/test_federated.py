"""Federated meta-learning (chapter 09, section 1): splits, client update, aggregation, Flower = in-process."""

from __future__ import annotations

import pytest
import torch

from course_lib.data.synthetic import sample_2pl
from course_lib.federated.core import (CLIENT_METHODS, FedConfig, aggregate, client_update, initial_theta,
                                       payload_bytes, run_federated, split_clients)
from course_lib.models.meta_irt import MetaIRTConfig


@pytest.fixture(scope="module")
def data():
    s = sample_2pl(120, 30, missing_rate=0.05, seed=3)
    return s.responses, torch.arange(120)


SMALL = FedConfig(rounds=2, local_steps=2, local_batch=4, k_range=(1, 5),
                  meta=MetaIRTConfig(dims=1, steps=1, max_query=10))


def test_ability_split_is_non_iid_and_partitions(data):
    r, learners = data
    clients = split_clients(r, learners, 4, "ability")
    assert sorted(torch.cat(clients).tolist()) == learners.tolist()
    share = [float(torch.nanmean(r[c])) for c in clients]
    assert share == sorted(share) and share[-1] - share[0] > 0.2   # client 0 holds the weakest learners


def test_section_split_needs_groups(data):
    r, learners = data
    groups = ["a"] * 15 + ["b"] * 15
    assert len(split_clients(r, learners, 3, "section", groups)) == 3
    with pytest.raises(ValueError, match="groups"):
        split_clients(r, learners, 3, "section")
    with pytest.raises(ValueError, match="unknown client split"):
        split_clients(r, learners, 3, "age")


def test_aggregate_is_the_size_weighted_mean():
    a = {"w": torch.tensor([0.0, 2.0])}
    b = {"w": torch.tensor([3.0, 5.0])}
    assert torch.allclose(aggregate([(a, 1), (b, 2)])["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(aggregate([(a, 7)])["w"], a["w"])
    with pytest.raises(ValueError):
        aggregate([])


@pytest.mark.parametrize("method", sorted(CLIENT_METHODS))
def test_client_update_moves_theta_and_is_repeatable(data, method):
    r, learners = data
    theta = initial_theta(r, SMALL.meta)
    one, n = client_update(method, theta, r, learners[:30], SMALL, seed=5)
    two, _ = client_update(method, theta, r, learners[:30], SMALL, seed=5)
    assert n == 30
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert any(not torch.equal(one[k], theta[k]) for k in one)


def test_client_with_no_learners_gets_a_clear_error(data):
    r, learners = data
    theta = initial_theta(r, SMALL.meta)
    with pytest.raises(ValueError, match="no learners"):
        client_update("fedavg", theta, r, learners[:0], SMALL, seed=0)
    with pytest.raises(ValueError, match="client 1 has no learners"):
        run_federated("fedavg", r, [learners[:10], learners[:0]], SMALL)
    with pytest.raises(ValueError, match="unknown federated method"):
        client_update("fedprox", theta, r, learners[:10], SMALL, seed=0)


def test_run_counts_rounds_and_bytes(data):
    r, learners = data
    clients = split_clients(r, learners, 3)
    seen = []
    theta, log = run_federated("reptile", r, clients, SMALL, on_round=lambda i, th: seen.append(i))
    assert seen == [0, 1] and log["rounds"] == 2
    assert log["bytes_sent"] == 2 * 3 * 2 * payload_bytes(theta) == 2 * 3 * 2 * 4 * (30 + 30 + 1)


def test_flower_runs_the_same_functions_to_the_bit(data):
    pytest.importorskip("flwr")
    from course_lib.federated.flower import run_flower

    r, learners = data
    clients = split_clients(r, learners, 2, "ability")
    theta, _ = run_federated("per_fedavg", r, clients, SMALL, seed=4)
    flwr_theta, log = run_flower("per_fedavg", r, clients, SMALL, seed=4)
    assert log["rounds"] == 2 and log["bytes_sent"] > 2 * 2 * 2 * log["payload_bytes"] * 0.99
    for name in theta:
        assert torch.equal(theta[name], flwr_theta[name]), name
