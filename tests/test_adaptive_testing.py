"""The chapter 07 experiment module: both studies at toy sizes, the JSON it writes, its figures."""

import json

import numpy as np
import pytest
import torch

from course_lib.experiments import adaptive_testing as at


@pytest.fixture(scope="module")
def cat_result():
    g = torch.Generator().manual_seed(0)
    a, b = 0.5 + torch.rand(30, generator=g), torch.randn(30, generator=g)
    theta = torch.randn(400, generator=g)
    r = (torch.rand(400, 30, generator=g) < torch.sigmoid(a * (theta[:, None] - b))).float()
    r[torch.rand(r.shape, generator=g) < 0.05] = float("nan")
    return at.run_cat_study(r, n_steps=6, seed=0, n_synthetic=80, meta_iterations=5, n_boot=10, progress=False,
                            keep_traces=True, groups=["first"] * 15 + ["second"] * 15)


@pytest.fixture(scope="module")
def room_result():
    return at.run_classroom_study(n_past=120, past_horizon=40, n_test=60, horizon=30, n_hypotheses=16,
                                  pybkt_learners=15, seed=0, progress=False)


def test_cat_study_rows(cat_result):
    rows = cat_result["rows"]
    assert len(rows) == (5 + 4) * 6          # 5 testers on the real learners, 4 on synthetic ones, n = 1..6
    sections = [r for r in rows if r["method"] == "max Fisher information (2PL per section)"]
    assert {r["dataset"] for r in sections} == {"swesat"}
    assert {r["dataset"] for r in rows} == {"swesat", "synthetic"}
    assert {r["kind"] for r in rows} == {"baseline", "meta"}
    for r in rows:
        assert 0 <= r["auc_lo"] <= r["auc_hi"] <= 1 and 0 <= r["auc"] <= 1   # (10 resamples: a rough CI)
        assert r["ability_rmse"] >= 0 and r["n_learners"] > 0
    assert cat_result["wall_s"] > 0 and "fit_2pl" in cat_result["timings"]
    # the same pool/held-out split for every method of a dataset: held-out items are never asked
    for (dataset, _), tr in cat_result["traces"].items():
        sp = cat_result["splits"][dataset]
        assert not sp.heldout[torch.arange(len(tr.asked))[:, None], tr.asked].any()
    table = at.cat_table(cat_result, ns=(1, 6))
    assert list(table.columns) == [1, 6] and len(table) == 9
    assert len(at.figure_cat(cat_result).data) == 2 * 5 + 2     # bands + the two BOBCAT reference lines
    assert at.figure_cat(cat_result, "ability_rmse", "synthetic").layout.title.text.startswith("synthetic")


def test_cat_study_rejects_bad_input():
    with pytest.raises(ValueError, match="methods"):
        at.run_cat_study(torch.zeros(50, 30), methods=["oracle"], progress=False)
    with pytest.raises(ValueError, match="groups"):
        at.run_cat_study(torch.zeros(50, 30), groups=["a"] * 29, progress=False)


def test_classroom_study_tables(room_result):
    pol = room_result["policies"]
    assert [p["policy"] for p in pol] == ["fixed curriculum", "adaptive, from scratch",
                                          "adaptive, meta-learned prior", "oracle (knows the type)"]
    assert np.isnan(pol[0]["certified_share"]) and 0 <= pol[2]["certified_share"] <= 1
    for p in pol:
        assert p["share_all_mastered_lo"] <= p["share_all_mastered"] <= p["share_all_mastered_hi"]
    assert len(room_result["bkt_recovery"]) == 3 * 5 * 5       # types x skills x parameters
    for row in room_result["pybkt_check"]:
        assert row["fit_bkt"] == pytest.approx(row["pyBKT"], abs=1e-4)
    w = np.array(room_result["meta_prior"]["weights"])
    assert w.shape == (16,) and w.sum() == pytest.approx(1.0)
    assert len(room_result["time_to_mastery"]["fixed curriculum"]) == 60
    for fig in (at.figure_bkt_recovery, at.figure_meta_prior, at.figure_mastery_curves, at.figure_time_to_mastery):
        assert len(fig(room_result).data) > 0


def test_run_and_cli_write_json(monkeypatch, tmp_path, room_result):
    monkeypatch.setattr(at, "run_classroom_study", lambda **kw: room_result)
    path = tmp_path / "out.json"
    res = at.main(["--part", "classroom", "--json", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert data["wall_s"] >= 0 and data["rows"] == [] and len(data["bobcat_reference"]) == 8
    assert [p["policy"] for p in data["classroom"]["policies"]] == [p["policy"] for p in res["classroom"]["policies"]]
    assert data["classroom"]["policies"][0]["certified_share"] is None       # NaN becomes null
    with pytest.raises(ValueError, match="parts"):
        at.run(parts=("cat", "dance"))
    with pytest.raises(ValueError, match="prefix"):
        at.run(parts=("classroom",), n_test=5)
