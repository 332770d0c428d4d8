"""Tests for course_lib.data: SweSAT / VerbAgg loaders, response validation, splits, synthetic 2PL."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.data import responses as resp
from course_lib.data.responses import (ChecksumError, responses_checksum, split_learners,
                                       validate_responses)
from course_lib.data.synthetic import sample_2pl


@pytest.fixture(scope="module")
def swesat():
    from course_lib.data.swesat import load_swesat
    return load_swesat()


def test_swesat_shape_values_and_checksum(swesat):
    r = swesat.responses
    assert tuple(r.shape) == (5000, 160) and r.dtype == torch.float32
    answered = ~torch.isnan(r)
    assert set(torch.unique(r[answered]).tolist()) == {0.0, 1.0}
    assert int((~answered).sum()) == 5129
    assert swesat.checksum == responses_checksum(r)
    assert list(swesat.items["group"].unique()) == ["quantitative", "verbal"]
    assert (swesat.items["n_missing"].to_numpy() == (~answered).sum(0).numpy()).all()


def test_swesat_keeps_missing_as_missing_not_wrong(swesat):
    from irtorch.load_dataset import swedish_sat_binary
    theirs = swedish_sat_binary()
    ours = swesat.responses
    missing = torch.isnan(ours)
    assert (theirs[missing] == 0).all()          # irtorch scores a missing answer as wrong ...
    assert torch.equal(theirs[~missing], ours[~missing])  # ... and agrees everywhere else


def test_swesat_sections(swesat):
    from course_lib.data.swesat import load_swesat
    q = load_swesat(section="quantitative")
    v = load_swesat(section="verbal")
    assert q.n_items == v.n_items == 80
    assert torch.equal(torch.cat([q.responses, v.responses], 1).nan_to_num(-1), swesat.responses.nan_to_num(-1))
    assert set(q.items["group"]) == {"quantitative"}
    with pytest.raises(ValueError, match="section"):
        load_swesat(section="math")


def test_checksum_mismatch_raises(monkeypatch):
    from course_lib.data import swesat as mod
    monkeypatch.setattr(mod, "SWESAT_SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match="datasets/swesat.md"):
        mod.load_swesat()
    assert mod.load_swesat(verify=False).n_learners == 5000


def test_verbagg():
    from course_lib.data.verbagg import load_verbagg
    d = load_verbagg()
    assert tuple(d.responses.shape) == (316, 24)
    assert not torch.isnan(d.responses).any()
    assert d.checksum == responses_checksum(d.responses)
    assert set(d.items.columns) >= {"name", "group", "btype", "situ", "mode"}
    assert d.items["name"].iloc[0] == "S1WantCurse" and len(d.learners) == 316
    # "yes" and "perhaps" are coded 1
    assert abs(float(d.responses.mean()) - 0.476) < 0.001


def test_lsat():
    from course_lib.data.lsat import load_lsat
    for section, share in ((6, 0.7638), (7, 0.7414)):
        d = load_lsat(section)
        assert tuple(d.responses.shape) == (1000, 5) and not torch.isnan(d.responses).any()
        assert d.checksum == responses_checksum(d.responses)
        assert abs(float(d.responses.mean()) - share) < 1e-4
        assert list(d.items["name"]) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    with pytest.raises(ValueError, match="6 or 7"):
        load_lsat(5)


def test_checksum_canonical():
    a = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    b = a.clone()
    b[0, 1] = -float("nan")  # another NaN bit pattern
    assert responses_checksum(a) == responses_checksum(b)
    assert responses_checksum(a) != responses_checksum(a.T.contiguous())
    assert responses_checksum(a) != responses_checksum(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0.0, 2.0], [1.0, 0.0]]), "must hold 0"),
    (torch.tensor([[0.5, 1.0], [1.0, 0.0]]), "must hold 0"),
    (torch.tensor([[float("nan"), float("nan")], [1.0, 0.0]]), "no answer at all"),
    (torch.tensor([[float("nan"), 1.0], [float("nan"), 0.0]]), "answered by nobody"),
    (torch.tensor([1.0, 0.0]), r"\[learners, items\]"),
    (torch.zeros(0, 3), "empty"),
    ("not a matrix", "must be a torch.Tensor"),
])
def test_validate_rejects_bad_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_responses(bad)


def test_validate_too_few_items_for_k():
    r = torch.tensor([[1.0, 0.0, 1.0], [1.0, float("nan"), float("nan")]])
    with pytest.raises(ValueError, match="K = 1 needs at least 2"):
        validate_responses(r, k_shot=1)
    assert validate_responses(r[:1], k_shot=2).shape == (1, 3)


def test_validate_accepts_numpy_and_pandas():
    arr = np.array([[1, 0, np.nan], [0, 1, 1]], dtype=float)
    for x in (arr, pd.DataFrame(arr, columns=list("abc")), arr.astype(np.float32)):
        out = validate_responses(x)
        assert out.dtype == torch.float32 and torch.isnan(out[0, 2])
    with pytest.raises(ValueError, match="numeric"):
        validate_responses(pd.DataFrame({"a": ["yes", "no"]}))


@pytest.mark.parametrize("n", [10, 316, 5000])
def test_split_learners_partition(n):
    s = split_learners(n, seed=3)
    allx = torch.cat(list(s.values()))
    assert len(allx) == n and len(torch.unique(allx)) == n  # no learner in two splits
    assert torch.equal(s["test"], split_learners(n, seed=3)["test"])
    assert not torch.equal(s["test"], split_learners(n, seed=4)["test"])
    assert abs(len(s["train"]) - 0.7 * n) <= 1


def test_split_learners_errors():
    with pytest.raises(ValueError, match="sum"):
        split_learners(100, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="too few"):
        split_learners(2)


def test_synthetic_is_seeded_and_exposes_truth():
    s1 = sample_2pl(300, 12, seed=5)
    s2 = sample_2pl(300, 12, seed=5)
    assert torch.equal(s1.responses, s2.responses) and torch.equal(s1.theta, s2.theta)
    assert not torch.equal(s1.responses, sample_2pl(300, 12, seed=6).responses)
    assert s1.a.shape == (12, 1) and s1.b.shape == (12,) and s1.theta.shape == (300, 1)
    torch.testing.assert_close(s1.prob, torch.sigmoid(s1.a[:, 0] * (s1.theta - s1.b)))
    # the responses follow the probabilities
    big = sample_2pl(20000, 4, seed=1)
    assert (big.responses.mean(0) - big.prob.mean(0)).abs().max() < 0.02


def test_synthetic_multidimensional_and_missing():
    s = sample_2pl(400, 10, dims=2, correlation=0.4, missing_rate=0.2, seed=1)
    assert s.a.shape == (10, 2) and s.theta.shape == (400, 2)
    assert ((s.a > 0).sum(1) == 1).all()            # simple structure: one dimension per item
    assert abs(torch.isnan(s.responses).float().mean().item() - 0.2) < 0.03
    assert ((~torch.isnan(s.responses)).sum(1) >= 2).all()
    assert abs(float(torch.corrcoef(s.theta.T)[0, 1]) - 0.4) < 0.15
    with pytest.raises(ValueError, match="one ability dimension"):
        _ = s.b
    full = sample_2pl(50, 6, dims=3, structure="full", seed=0)
    assert (full.a > 0).all()
    data = s.to_response_data()
    assert data.n_items == 10 and set(data.items["group"]) == {"dim1", "dim2"}


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="structure"):
        sample_2pl(10, 5, structure="bifactor")
    with pytest.raises(ValueError, match="missing_rate"):
        sample_2pl(10, 5, missing_rate=0.95)


def test_response_data_summary(swesat):
    s = swesat.summary()
    assert int(s.loc[0, "missing"]) == 5129 and int(s.loc[0, "min_answered_per_learner"]) >= 115
    assert resp.ResponseData is type(swesat)


def test_study_synthetic_checksum():
    from course_lib.data.synthetic import STUDY_SHA256
    s = sample_2pl(2000, 60, missing_rate=0.05, seed=0)
    assert responses_checksum(s.responses) == STUDY_SHA256


def test_load_study_data_by_name():
    from course_lib.data.responses import DATASETS, load_study_data

    d = load_study_data("verbagg")
    assert d.groups is None and d.truth is None and d.responses.shape == (316, 24)
    s = load_study_data("synthetic")
    assert s.truth is not None and s.responses.shape == (2000, 60)
    assert "swesat" in DATASETS
    with pytest.raises(ValueError, match="unknown dataset"):
        load_study_data("mnist")


def test_item_statistics_are_the_share_correct_logit_and_the_item_rest_correlation():
    from course_lib.data.responses import item_statistics

    r = sample_2pl(400, 12, seed=0).responses
    f = item_statistics(r)
    y = r.numpy()
    p = y.sum(0)
    assert np.allclose(f[:, 0].numpy(), np.log((p + 0.5) / (len(y) - p + 0.5)), atol=1e-5)
    rest = (y.sum(1, keepdims=True) - y) / (y.shape[1] - 1)
    corr = [np.corrcoef(y[:, j], rest[:, j])[0, 1] for j in range(y.shape[1])]
    assert np.allclose(f[:, 1].numpy(), corr, atol=1e-5)
    with pytest.raises(ValueError, match="0 \\(incorrect\\), 1"):
        item_statistics(torch.full((3, 2), 2.0))
