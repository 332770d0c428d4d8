"""The chapter 09 studies (federated, privacy) on a tiny budget: the rows, the contract, bad input."""

from __future__ import annotations

import math

import pytest

from course_lib.experiments import common, federated, privacy


def test_federated_study_rows_and_stored_theta(tmp_path):
    cfg = federated.Config(methods=("fedavg", "centralised_maml"), k_shots=(5,), rounds=1, local_steps=1,
                           local_batch=4, n_boot=5)
    res = federated.run(cfg, progress=False)
    tab = res.table().set_index("method")
    assert set(tab.index) == {"fedavg", "centralised_maml"}
    assert tab.loc["fedavg", "bytes_sent"] == 2 * 5 * res.details["payload_bytes"]   # 1 round, 5 clients
    assert tab.loc["centralised_maml", "rounds"] == 0
    assert (tab.auc_lo <= tab.auc_hi).all() and tab.auc.between(0.5, 1).all()
    assert set(res.details["theta"]["fedavg"]) == {"alpha", "item_a", "item_d", "ability"}
    assert res.details["paired"][0]["versus"] == "centralised_maml"
    again = common.load_json(common.save_json(res, tmp_path / "f.json"))
    assert again.rows == common.json_safe(res.rows)


def test_federated_study_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown methods"):
        federated.run(federated.Config(methods=("fedprox",)), progress=False)


def test_privacy_study_reports_epsilon_per_row():
    cfg = privacy.Config(epsilons=(3.0, math.inf), iterations=3, seeds=(0,), k_shots=(5,), n_boot=5)
    res = privacy.run(cfg, progress=False)
    rows = {r["target_epsilon"]: r for r in res.rows}
    assert 2.9 <= rows[3.0]["epsilon"] <= 3.0 and rows[3.0]["noise_multiplier"] > 0
    assert rows[math.inf]["epsilon"] == math.inf and rows[math.inf]["noise_multiplier"] == 0
    summary = {(s["target_epsilon"], s["k_shot"]): s for s in res.details["summary"]}
    assert summary[(math.inf, 5)]["epsilon"] == math.inf and summary[(3.0, 5)]["seeds"] == 1


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_privacy_study_rejects_non_positive_epsilon(bad):
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        privacy.Config(epsilons=(bad,))
