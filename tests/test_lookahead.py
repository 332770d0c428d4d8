"""Tests for the chapter 07 lookahead study (course_lib.experiments.lookahead)."""

import pytest

from course_lib.experiments import lookahead

TINY = lookahead.Config(n_past=40, past_horizon=20, n_test=30, horizon=25, n_hypotheses=8, depths=(1, 5), all_depth=5)


@pytest.fixture(scope="module")
def result():
    return lookahead.run(TINY, progress=False)


def test_rows_and_paired_differences(result):
    table = result.table().set_index("policy")
    assert list(table.index) == [name for name, _, _ in TINY.policies()]
    # depth 1 is the one-step tutor: the same actions on the same learners, so no difference
    assert table.loc["lookahead, depth 1", "gain_vs_ref"] == pytest.approx(0.0, abs=0.05)
    assert (table.share_lo <= table.share_all_mastered).all()


def test_same_seed_same_result(result):
    assert lookahead.run(TINY, progress=False).to_dict(timing=False) == result.to_dict(timing=False)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="depths"):
        lookahead.Config(depths=(0,))
