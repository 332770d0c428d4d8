"""The chapter 07 learning-path study (course_lib.experiments.learning_paths) at toy size, its JSON and figures."""

import json

import numpy as np
import pytest

from course_lib import viz
from course_lib.experiments import learning_paths as lp

TOY = lp.Config(n_past=120, past_horizon=40, n_test=60, horizon=30, n_hypotheses=16, pybkt_learners=15, seed=0)


@pytest.fixture(scope="module")
def room_result():
    return lp.run(TOY, progress=False)


def test_classroom_study_tables(room_result):
    pol = room_result.rows
    assert [p["policy"] for p in pol] == ["fixed curriculum", "adaptive, from scratch",
                                          "adaptive, meta-learned prior", "oracle (knows the type)"]
    assert np.isnan(pol[0]["certified_share"]) and 0 <= pol[2]["certified_share"] <= 1
    for p in pol:
        assert p["share_all_mastered_lo"] <= p["share_all_mastered"] <= p["share_all_mastered_hi"]
    d = room_result.details
    assert len(d["bkt_recovery"]) == 3 * 5 * 5       # types x skills x parameters
    for row in d["pybkt_check"]:
        assert row["fit_bkt"] == pytest.approx(row["pyBKT"], abs=1e-4)
    w = np.array(d["meta_prior"]["weights"])
    assert w.shape == (16,) and w.sum() == pytest.approx(1.0)
    assert len(d["time_to_mastery"]["fixed curriculum"]) == 60
    for fig in (viz.figure_bkt_recovery, viz.figure_meta_prior, viz.figure_mastery_curves, viz.figure_time_to_mastery):
        assert len(fig(room_result).data) > 0


def test_run_and_cli_write_json(monkeypatch, tmp_path, room_result):
    monkeypatch.setattr(lp, "run", lambda config, **kw: room_result)
    path = tmp_path / "out.json"
    res = lp.main(["--json", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert data["wall_s"] >= 0 and data["study"] == "learning_paths"
    assert [p["policy"] for p in data["rows"]] == [p["policy"] for p in res.rows]
    assert data["rows"][0]["certified_share"] is None       # NaN becomes null
    with pytest.raises(SystemExit):
        lp.main(["--set", "n_tset=5"])                       # a misspelt setting is an error, not ignored
