"""The domain-shift study (course_lib.experiments.protomaml_shift) on a small configuration."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.experiments import protomaml_shift as study

SMALL = study.Config(iterations=6, n_test=30, n_boot=20, k_shots=(1, 3), meta_batch=4, steps=2)


@pytest.fixture(scope="module")
def result():
    return study.run(SMALL, progress=False, device="cpu")


def test_every_method_section_pair_and_k_has_a_row(result):
    rows = result.rows
    meta = [r for r in rows if r["kind"] == "meta"]
    base = [r for r in rows if r["kind"] == "baseline"]
    assert len(meta) == 3 * 2 * 2 * 2 and len(base) == 2 * 2 * 2  # methods x sources x targets x K
    assert {r["condition"] for r in meta} == {"in-domain", "shifted"}
    for r in rows:
        assert 0 < r["auc_lo"] <= r["auc"] <= r["auc_hi"] < 1, r
        assert 0 <= r["accuracy_lo"] <= r["accuracy"] <= r["accuracy_hi"] <= 1, r
        assert r["n_learners"] == SMALL.n_test
        assert (r["condition"] == "shifted") == (r["kind"] == "meta" and r["source"] != r["target"])
    paired = result.details["paired"]
    assert {p["versus"] for p in paired} == {"protonet", "maml", "irt_2pl_eap", "item_easiness"}
    assert len(paired) == 2 * 2 * 2 * 4  # sources x targets x K x other methods
    assert all(p["lo"] <= p["diff"] <= p["hi"] for p in paired)
    shift = result.details["shift_cost"]
    assert len(shift) == 3 * 2 * 2 and all(s["source"] != s["target"] for s in shift)
    assert all(s["lo"] <= s["diff"] <= s["hi"] for s in shift)


def test_zero_inner_steps_protomaml_trains_and_scores_like_protonet():
    config = study.Config(iterations=6, n_test=20, n_boot=5, k_shots=(2,), meta_batch=4, steps=0,
                          sections=("verbal",), methods=("protonet", "protomaml"))
    rows = {r["method"]: r for r in study.run(config, progress=False, device="cpu").rows}
    assert rows["protomaml"]["auc"] == pytest.approx(rows["protonet"]["auc"], abs=2e-3)


def test_sections_are_split_by_learner_with_two_item_features():
    sections = study.load_sections(SMALL)
    s = sections["verbal"]
    assert s.features.shape == (80, 2)
    assert np.isin(s.test.numpy(), s.train.numpy()).sum() == 0  # split by learner


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown methods"):
        study.run(study.Config(methods=("protomaml", "reptile_xyz")), progress=False)
    with pytest.raises(ValueError, match="sections"):
        study.run(study.Config(sections=("maths",)), progress=False)
    with pytest.raises(ValueError, match="lower n_test"):
        study.run(study.Config(n_test=5000, iterations=1), progress=False)
