"""Tests for the chapter 07 tutoring-feedback study (course_lib.experiments.tutoring_feedback)."""

import pytest

from course_lib.experiments import tutoring_feedback as tf

TINY = tf.Config(n_past=300, past_errors=20, n_test=300, n_errors=12)


@pytest.fixture(scope="module")
def result():
    return tf.run(TINY, progress=False)


def test_oracle_is_the_floor_of_regret(result):
    table = result.table().set_index("policy")
    assert set(table.index) == set(TINY.policies)
    assert table.loc["oracle (knows the type)", "regret"] == 0
    assert (table.regret >= 0).all()
    assert table.expected_gain.idxmax() == "oracle (knows the type)"


def test_same_seed_same_result(result):
    assert tf.run(TINY, progress=False).to_dict(timing=False) == result.to_dict(timing=False)


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="choose from"):
        tf.run(tf.Config(n_past=20, n_test=20, policies=("always hnit",)), progress=False)
