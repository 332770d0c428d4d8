"""Tests for the chapter 06 text-resource study (course_lib.experiments.text_resources)."""

import pytest

from course_lib.experiments import text_resources as tr

TINY = dict(n_train=80, n_validation=20, n_test=40, iterations=30, meta_batch=8, k_shots=(1, 5))


@pytest.fixture(scope="module")
def result():
    return tr.run(tr.Config(**TINY), progress=False)


def test_rows_cover_every_method_and_k_shot(result):
    table = result.table(index="method", columns="k_shot", values="utility@5")
    assert set(table.index) == set(tr.Config().methods) and list(table.columns) == [1, 5]
    assert (table.loc["oracle"] >= table.loc[tr.CEILING]).all()
    bayes = result.table().query("method == @tr.CEILING")
    assert (bayes.vs_bayes == 0).all()


def test_same_seed_same_result(result):
    again = tr.run(tr.Config(**TINY), progress=False)
    assert again.to_dict(timing=False) == result.to_dict(timing=False)


def test_unknown_method_and_bad_k_shots_are_named():
    with pytest.raises(ValueError, match="choose from"):
        tr.run(tr.Config(**{**TINY, "methods": ("ranodm",)}), progress=False)
    with pytest.raises(ValueError, match="k_shots"):
        tr.Config(k_shots=(15,))
