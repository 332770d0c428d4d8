"""The sinusoid replication pipeline on a tiny budget: schema, evaluation protocol, determinism."""

import math

import pytest
import torch

from course_lib.experiments import sinusoid as sx
from course_lib.tasks import sample_sinusoid_tasks


def test_run_schema_and_paper_rows():
    res = sx.run(iterations=30, meta_batch=4, ks=(5,), steps=(1, 2), n_test=20, n_query_test=10,
                 compile=False, progress=False, device="cpu")
    assert {"train_s", "wall_s", "rows", "models"} <= set(res)
    methods = {r["method"] for r in res["rows"]}
    assert methods == set(sx.METHODS)
    for r in res["rows"]:
        assert {"method", "k", "steps", "mse_median", "mse_mean"} <= set(r)
        assert math.isfinite(r["mse_median"])
    paper = [r for r in res["rows"] if r["method"] == "maml" and r["steps"] == 1]
    assert paper[0]["paper"] == 0.67


def test_finetune_curve_step0_is_unadapted_loss_and_reuses_support_points():
    torch.manual_seed(0)
    model = sx.make_model()
    b, _, _ = sample_sinusoid_tasks(5, 5, 20, generator=torch.Generator().manual_seed(0))
    theta = dict(model.named_parameters())
    curve = sx.finetune_curve(model, theta, b, alpha=0.01, max_steps=3)
    assert curve.shape == (5, 4)
    with torch.no_grad():
        step0 = ((model(b.x_query) - b.y_query) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(curve[:, 0], step0)


def test_summarise_flags_diverged_tasks():
    curve = torch.tensor([[1.0, 0.5], [1.0, float("nan")], [1.0, 1e6], [1.0, 0.7]])
    (row,) = sx.summarise(curve, (1,))
    assert row["n_diverged"] == 2 and row["mse_mean"] == pytest.approx(0.6)


def test_bad_method_is_rejected():
    with pytest.raises(ValueError, match="unknown methods"):
        sx.run(methods=("maml", "protonet"), iterations=1)
