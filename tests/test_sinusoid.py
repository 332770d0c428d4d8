"""The sinusoid replication pipeline on a tiny budget: schema, evaluation protocol, determinism."""

import math

import pytest
import torch

from course_lib.experiments import sinusoid as sx
from course_lib.experiments.common import load_json, save_json
from course_lib.tasks import sample_sinusoid_tasks


@pytest.mark.parametrize("fused", [True, False])
def test_run_schema_and_paper_rows(fused, tmp_path):
    config = sx.Config(iterations=30, meta_batch=4, ks=(5,), steps=(1, 2), n_test=20, n_query_test=10,
                       compile=False, fused=fused)
    res = sx.run(config, progress=False, device="cpu")
    assert res.study == "sinusoid" and set(res.details["timings"]["train_s"]) == set(sx.METHODS)
    methods = {r["method"] for r in res.rows}
    assert methods == set(sx.METHODS)
    for r in res.rows:
        assert {"method", "k", "steps", "mse_median", "mse_mean"} <= set(r)
        assert math.isfinite(r["mse_median"])
    paper = [r for r in res.rows if r["method"] == "maml" and r["steps"] == 1]
    assert paper[0]["paper"] == 0.67
    # the trained networks survive a JSON round trip, and the same seed gives the same rows
    back = load_json(save_json(res, tmp_path / "s.json"))
    for method, model in sx.models(back).items():
        for k, v in model.state_dict().items():
            assert torch.equal(v, res.details["theta"][method][k])
    again = sx.run(config, progress=False, device="cpu")
    assert again.to_dict(timing=False) == res.to_dict(timing=False)


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
    with pytest.raises(ValueError, match="unknown method 'protonet'"):
        sx.run(sx.Config(methods=("maml", "protonet"), iterations=1))
