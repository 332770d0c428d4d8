"""The chapter 06 study (course_lib.experiments.recommendation): config, method registry, CLI and JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from course_lib.experiments import recommendation as rec

QUICK = ["--set", "iterations=3", "--set", "variants=MAML", "--set", "shrinkages=2.0", "--set", "mf_ranks=0",
         "--set", "mf_regs=10.0", "--set", "mf_reg_biases=5.0", "--set", "test_steps=0,1"]


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="variants"):
        rec.Config(variants=("MAML", "ProtoNet"))
    with pytest.raises(ValueError, match="K in k_shots"):
        rec.Config(k_shots=(0, 3))
    with pytest.raises(ValueError, match="test_steps"):
        rec.Config(test_steps=())
    with pytest.raises(ValueError, match="equal length"):
        rec.Config(mf_ranks=(0, 2))


def test_every_configured_method_is_registered():
    assert set(rec.Config(ablation=True).methods()) == set(rec.METHODS.names())
    assert rec.ABLATION not in rec.Config().methods()
    with pytest.raises(ValueError, match="choose from"):
        rec.METHODS["MeLU-ProtoNet"]


def test_cli_writes_the_table(tmp_path, capsys):
    """End to end on a tiny budget: the JSON has every field the chapter and the closing note use."""
    path = tmp_path / "rec.json"
    out = rec.main(["--json", str(path), "--no-progress", "--device", "cpu", *QUICK])
    data = json.loads(path.read_text())
    assert data["wall_s"] > 0 and data["rows"] == json.loads(json.dumps(out.rows))
    table = pd.DataFrame(data["rows"])
    assert {"method", "kind", "k_shot", "mae", "mae_lo", "mae_hi", "rmse", "ndcg3", "n_students"} <= set(table.columns)
    assert set(table["k_shot"]) == {1, 3, 5, 10, "all"}
    assert set(table["kind"]) == {"baseline", "meta"}
    assert {"global mean", "popularity", "MF fold-in", rec.MIXED, "MeLU-MAML"} <= set(table["method"])
    assert (table["r2"] < 1).all() and (table.loc[table.method == rec.MIXED, "r2"] > 0).all()
    paired = pd.DataFrame(data["details"]["paired"])
    assert set(paired["versus"]) == set(rec.REFERENCES) and (paired["lo"] <= paired["hi"]).all()
    assert len(paired.groupby(["method", "versus", "k_shot"])) == len(paired)
    shares = data["details"]["baselines"][rec.MIXED]["variance_shares"]
    assert set(shares) == {"student", "lecturer", "covariates", "residual"} and 0 < shares["covariates"] < 1
    assert (table["mae_lo"] <= table["mae"]).all() and (table["mae"] <= table["mae_hi"]).all()
    sweep = table[table["k_shot"] != "all"]
    assert sweep["n_students"].nunique() == 1  # every K is scored on the same test students
    assert table.loc[table["k_shot"] == "all", "n_students"].iloc[0] > sweep["n_students"].iloc[0]
    # the global mean is the worst predictor and never uses the support set
    gm = table[table.method == "global mean"]
    assert gm.loc[gm["k_shot"] != "all", "mae"].nunique() == 1
    assert "MAE" in capsys.readouterr().out.upper()
    assert {"paired", "baselines", "steps", "history", "validation_mae_by_steps", "timings"} <= set(data["details"])
