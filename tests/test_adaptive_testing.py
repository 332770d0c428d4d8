"""The chapter 07 CAT study (course_lib.experiments.adaptive_testing) at toy size, its JSON and figures."""

import dataclasses
import json

import pytest
import torch

from course_lib import viz
from course_lib.data.responses import StudyData
from course_lib.experiments import adaptive_testing as at
from course_lib.adaptive.bobcat import BOBCATConfig
from course_lib.models.meta_irt import MetaIRTConfig


@pytest.fixture(scope="module")
def toy_data():
    g = torch.Generator().manual_seed(0)
    a, b = 0.5 + torch.rand(30, generator=g), torch.randn(30, generator=g)
    theta = torch.randn(400, generator=g)
    r = (torch.rand(400, 30, generator=g) < torch.sigmoid(a * (theta[:, None] - b))).float()
    r[torch.rand(r.shape, generator=g) < 0.05] = float("nan")
    return StudyData(r, ["first"] * 15 + ["second"] * 15)


TOY = at.Config(n_steps=6, seed=0, n_synthetic=80, n_boot=10, meta=MetaIRTConfig(iterations=5),
                keep_traces=True, bobcat=BOBCATConfig(iterations=2, n_steps=3, batch=16, hidden=16))


@pytest.fixture(scope="module")
def cat_result(toy_data):
    return at.run(TOY, data=toy_data, progress=False)


def test_cat_study_rows(cat_result):
    rows = cat_result.rows
    assert len(rows) == (8 + 7) * 6          # 8 testers on the real learners, 7 on synthetic ones, n = 1..6
    sections = [r for r in rows if r["method"] == "max Fisher information (2PL per section)"]
    assert {r["dataset"] for r in sections} == {"swesat"}
    assert {r["dataset"] for r in rows} == {"swesat", "synthetic"}
    assert {r["kind"] for r in rows} == {"baseline", "meta"}
    for r in rows:
        assert 0 <= r["auc_lo"] <= r["auc_hi"] <= 1 and 0 <= r["auc"] <= 1   # (10 resamples: a rough CI)
        assert r["ability_rmse"] >= 0 and r["n_learners"] > 0
    assert cat_result.wall_s > 0 and "fit_2pl" in cat_result.details["timings"]
    # the same pool/held-out split for every method of a dataset: held-out items are never asked
    for (dataset, _), tr in cat_result.details["traces"].items():
        sp = cat_result.details["splits"][dataset]
        assert not sp.heldout[torch.arange(len(tr.asked))[:, None], tr.asked].any()
    table = at.cat_table(cat_result, ns=(1, 6))
    assert list(table.columns) == [1, 6] and len(table) == 15
    assert len(viz.figure_cat(cat_result).data) == 2 * 8 + 2     # bands + the two BOBCAT reference lines
    assert viz.figure_cat(cat_result, "ability_rmse", "synthetic").layout.title.text.startswith("synthetic")


def test_paired_differences_against_the_section_fisher_tester(cat_result):
    paired = cat_result.details["paired"]
    assert len(paired) == 7 * 6 + 6 * 6      # every other tester, n = 1..6; synthetic: against the 2PL
    auc = {(r["dataset"], r["method"], r["n_items"]): r["auc"] for r in cat_result.rows}
    for p in paired:
        assert p["diff_lo"] <= p["diff_hi"]
        assert abs(p["diff"] - (auc[(p["dataset"], p["method"], p["n_items"])]
                                - auc[(p["dataset"], p["versus"], p["n_items"])])) < 1e-9
    assert {p["versus"] for p in paired if p["dataset"] == "swesat"} == {"max Fisher information (2PL per section)"}


def test_swaps_separate_questions_from_predictions(cat_result):
    swaps = cat_result.details["swaps"]
    testers = {r["tester"] for r in swaps}
    assert len(testers) == 5 and len(swaps) == 5 * at.SWAP_STEPS
    by = {(r["tester"], r["n_items"]): r for r in swaps}
    for n in range(1, at.SWAP_STEPS + 1):
        assert by[("per-section questions, per-section predictions", n)]["diff"] == 0
        ours = [r for r in cat_result.rows if r["method"] == "BOBCAT (learned policy)" and r["n_items"] == n][0]
        assert abs(by[("BOBCAT questions, BOBCAT predictions", n)]["auc"] - ours["auc"]) < 1e-9
    for r in swaps:
        assert abs(sum(r["first_question_section_share"]) - 1) < 1e-6 and r["diff_lo"] <= r["diff_hi"]
    # the same questions give the same first-question sections whoever predicts
    assert (by[("BOBCAT questions, per-section predictions", 1)]["first_question_section_share"]
            == by[("BOBCAT questions, BOBCAT predictions", 1)]["first_question_section_share"])


def test_cat_study_rejects_bad_input():
    with pytest.raises(ValueError, match="methods"):
        at.run(at.Config(methods=("oracle",)), data=StudyData(torch.zeros(50, 30)), progress=False)
    with pytest.raises(ValueError, match="groups"):
        at.run(at.Config(), data=StudyData(torch.zeros(50, 30), ["a"] * 29), progress=False)


def test_item_params_skip_the_fit_and_give_the_same_rows(toy_data, cat_result):
    from course_lib.baselines.irt import fit_2pl
    from course_lib.data.responses import split_learners

    cfg = at.Config(n_steps=6, n_synthetic=0, n_boot=10, methods=("max Fisher information (2PL IRT)",))
    train = split_learners(400, (0.7, 0.1, 0.2), seed=0)["train"]
    given = at.run(cfg, data=toy_data, item_params=fit_2pl(toy_data.responses[train]), progress=False)
    same = [r for r in cat_result.rows if r["method"] == cfg.methods[0] and r["dataset"] == "swesat"]
    assert given.rows == same
    with pytest.raises(ValueError, match="item_params has"):
        at.run(cfg, data=toy_data, item_params=fit_2pl(toy_data.responses[train][:, :20]), progress=False)


def test_cli_writes_json(monkeypatch, tmp_path, toy_data, cat_result):
    monkeypatch.setattr(at, "load_study_data", lambda name: toy_data)
    @dataclasses.dataclass(frozen=True)
    class ToyConfig(at.Config):                       # the CLI's defaults at toy size
        n_synthetic: int = 80
        n_boot: int = 10
        meta: MetaIRTConfig = dataclasses.field(default_factory=lambda: MetaIRTConfig(iterations=5))

    monkeypatch.setattr(at, "Config", ToyConfig)
    path = tmp_path / "out.json"
    res = at.main(["--set", "n_steps=6", "--json", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert data["wall_s"] >= 0 and len(data["details"]["bobcat_reference"]) == 8
    assert data["rows"] == json.loads(json.dumps(res.rows)) and len(data["rows"]) == len(cat_result.rows)


def test_swapped_tester_asks_one_model_and_predicts_with_the_other(toy_data):
    from course_lib.adaptive.cat import IRTModel, run_cat, split_items
    from course_lib.adaptive.swaps import SwappedTester, swap_table

    r = torch.nan_to_num(toy_data.responses[:50], 0.0)
    sp = split_items(r, n_steps=3, seed=1)
    flat, steep = IRTModel(torch.ones(30), torch.linspace(-2, 2, 30)), IRTModel(torch.full((30,), 2.0), torch.zeros(30))
    mixed = run_cat(SwappedTester(flat, steep), r, sp, "max_information", 3, scorer=flat)
    asked_by_flat = run_cat(flat, r, sp, "max_information", 3)
    assert torch.equal(mixed.asked, asked_by_flat.asked)
    state = steep.begin(50)
    for n in range(3):
        state = steep.observe(state, mixed.asked[:, n], mixed.answers[:, n])
    torch.testing.assert_close(mixed.heldout_prob[2][sp.heldout], steep.predict(state)[sp.heldout])
    with pytest.raises(ValueError, match="reference"):
        swap_table({"a": (flat, "random")}, "b", r, sp, flat, torch.zeros(30, dtype=torch.long))
