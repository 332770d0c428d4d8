"""course_lib.experiments.distillation: the study contract, the gain-kept identity, a tiny end-to-end run."""

from __future__ import annotations

import pytest

from course_lib.experiments import common, distillation


def test_gain_kept_is_one_for_the_teacher_zero_for_the_baseline_and_linear_between():
    rows = [{"method": m, "k": k, "auc": a} for k, (base, teach, stud) in {5: (0.6, 0.7, 0.69), 10: (0.6, 0.72, 0.75)}.items()
            for m, a in (("item_mean", base), ("teacher", teach), ("student_amortized", stud))]
    distillation._gain_kept(rows)
    kept = {(r["method"], r["k"]): r["gain_kept"] for r in rows}
    assert kept[("teacher", 5)] == pytest.approx(1) and kept[("item_mean", 10)] == pytest.approx(0)
    assert kept[("student_amortized", 5)] == pytest.approx(0.9) and kept[("student_amortized", 10)] == pytest.approx(1.25)


def test_unknown_names_and_bad_ks_fail_before_any_training():
    with pytest.raises(ValueError, match="unknown method 'oracle'"):
        distillation.run(distillation.Config(methods=("oracle",)), progress=False)
    with pytest.raises(ValueError, match="unknown runtime 'tpu'"):
        distillation.run(distillation.Config(runtimes=("tpu",)), progress=False)
    with pytest.raises(ValueError, match="ks must be positive"):
        distillation.run(distillation.Config(ks=(0, 5)), progress=False)


def test_tiny_run_follows_the_contract_and_saves_a_servable_model(tmp_path):
    from course_lib.serving.model import load_bundle

    cfg = distillation.Config(ks=(1, 3), methods=("item_mean", "teacher", "student_amortized"), teacher_iterations=4,
                              teacher_warm_iterations=2, distill_steps=6, batch=32, latency_updates=60,
                              runtimes=("eager",), save_model=str(tmp_path / "model.pt"))
    result = distillation.run(cfg, progress=False, device="cpu")
    assert isinstance(result, common.Result) and result.study == "distillation"
    assert {(r["method"], r["k"]) for r in result.rows} == {(m, k) for m in cfg.methods for k in cfg.ks}
    assert all(0 <= r["auc"] <= 1 and r["n_learners"] == 1000 for r in result.rows)
    assert set(result.details["timings"]["latency_ms"]) == set(cfg.methods)
    assert "auc" not in str(result.details["timings"])            # timings stay out of the reproducible part
    teacher, student = load_bundle(cfg.save_model)
    assert sorted(teacher.learners) == [1, 3] and student.item_a.shape == (160, teacher.dims)
    saved = common.save_json(result, tmp_path / "r.json", timing=False)
    assert common.load_json(saved).rows == result.rows
