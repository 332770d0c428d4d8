"""course_lib.export: ONNX export (dynamo) agrees with torch; torch.compile agrees; the timer is sane."""

from __future__ import annotations

import pytest
import torch

from course_lib.export import OnnxStudent, StudentProb, compile_student, export_onnx, time_updates
from course_lib.models.amortized import AmortizedAdapter, SmallStudent

N_ITEMS, DIMS = 15, 2


def _trained_like(student: torch.nn.Module) -> torch.nn.Module:
    """Random (not zero) weights everywhere, so that agreement is tested on every path of the graph."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in student.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return student.eval()


STUDENTS = {"amortized": lambda: AmortizedAdapter(N_ITEMS, DIMS, width=6, hidden=8),
            "small": lambda: SmallStudent(N_ITEMS, width=4, hidden=5)}


@pytest.fixture(scope="module", params=sorted(STUDENTS))
def exported(request, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    student = _trained_like(STUDENTS[request.param]())
    path = export_onnx(student, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    return student, OnnxStudent(path, threads=1)


@pytest.mark.parametrize("learners, n", [(1, 1), (1, 10), (7, 3), (64, 25)])
def test_onnx_and_torch_agree_on_random_batches(exported, learners, n):
    student, session = exported
    g = torch.Generator().manual_seed(learners * 100 + n)
    items = torch.randint(N_ITEMS, (learners, n), generator=g)
    answers = torch.randint(2, (learners, n), generator=g).float()
    mask = (torch.rand(learners, n, generator=g) < 0.8).float()
    mask[:, 0] = 1
    with torch.no_grad():
        want = StudentProb(student)(items, answers, mask)
    got = torch.from_numpy(session(items, answers, mask))
    assert got.shape == (learners, N_ITEMS)
    assert (got - want).abs().max() <= 1e-4


def test_onnx_handles_a_learner_with_no_answers(exported):
    student, session = exported
    items, answers, mask = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1), torch.zeros(2, 1)
    with torch.no_grad():
        want = StudentProb(student)(items, answers, mask)
    assert (torch.from_numpy(session(items, answers, mask)) - want).abs().max() <= 1e-4


def test_export_refuses_a_module_that_is_not_a_student(tmp_path):
    with pytest.raises(ValueError, match="needs a course_lib student"):
        export_onnx(torch.nn.Linear(3, 3), tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxStudent(tmp_path / "missing.onnx")


def test_compiled_student_agrees_with_eager():
    student = _trained_like(STUDENTS["amortized"]())
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(N_ITEMS, (1, 10), generator=g), torch.randint(2, (1, 10), generator=g).float(), torch.ones(1, 10))
    fn = compile_student(student, x)
    with torch.no_grad():
        assert torch.allclose(fn(*x), StudentProb(student)(*x), atol=1e-5)


def test_cpu_time_excludes_waiting():
    import time

    out = time_updates(lambda: time.sleep(0.002), [()] * 20, warmup=0)
    assert out["p50"] >= 2.0 and out["cpu_p99"] < 1.0        # sleeping (like being preempted) costs no CPU


def test_time_updates_counts_every_input_and_orders_percentiles():
    calls = []
    out = time_updates(lambda v: calls.append(v), [(i,) for i in range(30)], warmup=5)
    assert len(calls) == 35 and out["n"] == 30
    assert 0 <= out["p50"] <= out["p99"] and out["mean"] > 0 and 0 <= out["cpu_p50"] <= out["cpu_p99"]
    with pytest.raises(ValueError, match="at least one input"):
        time_updates(lambda: None, [])
