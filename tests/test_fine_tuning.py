"""course_lib.baselines.fine_tuning: pretraining from counts, the shared inner loop, tuning, the objective slice."""

from __future__ import annotations

import copy

import pytest
import torch

from course_lib.algorithms import MAML, maml_loss
from course_lib.algorithms.functional import get_loss
from course_lib.baselines import fine_tuning as FT
from course_lib.data.synthetic import sample_2pl
from course_lib.data.synthetic_learners import make_learners
from course_lib.metrics import query_log_loss
from course_lib.models.learner_model import ADAPT, LearnerModel
from course_lib.models.meta_irt import MetaIRT
from course_lib.tasks import TaskBatch, fixed_query_tasks


def _setup(seed: int = 5, n: int = 30):
    pop = make_learners(n, 30, seed=seed)
    model = LearnerModel(pop.public_features, seed=2)
    theta = {name: v.detach() for name, v in model.named_parameters()}
    return pop, model, theta


def test_pretraining_loss_from_counts_is_the_pooled_cross_entropy():
    pop = make_learners(50, 20, seed=4)
    rows = torch.arange(50)
    model = LearnerModel(pop.public_features, seed=1)
    hist = FT.pretrain(model, pop.responses, rows, steps=1, lr=1e-12, progress=False)
    r, j = torch.nonzero(~torch.isnan(pop.responses), as_tuple=True)
    with torch.no_grad():
        pooled = torch.nn.functional.binary_cross_entropy_with_logits(model(j), pop.responses[r, j])
    assert hist["loss"][0] == pytest.approx(pooled.item(), rel=1e-5)


def test_chapter05_pretrain_finetune_runs_the_same_pretraining_loop():
    s = sample_2pl(300, 10, missing_rate=0.1, seed=1)
    pf = FT.PretrainFinetune(10, dims=1, seed=0)
    twin = copy.deepcopy(pf.model)
    losses = pf.pretrain(s.responses, epochs=50)
    hist = FT.pretrain(twin, s.responses, torch.arange(300), steps=50, progress=False)
    assert hist["step"] == [25, 50] and hist["loss"] == [losses[24], losses[49]]
    for a, b in zip(pf.model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_fine_tuning_and_maml_run_the_same_inner_loop():
    pop, model, theta = _setup()
    batch = fixed_query_tasks(pop.responses, torch.arange(30), [4], n_query=5, seed=0)[4]
    phi = FT.adapt_path(model, theta, batch, alpha=0.7, checkpoints=[3], adapt=ADAPT)[3]
    maml = MAML(model, loss="bce", alpha=0.7, steps=3, adapt=ADAPT)
    ref = maml.adapt_batch(batch)
    for name in phi:
        torch.testing.assert_close(phi[name], ref[name])
    assert not torch.equal(phi["head.weight"][0], theta["head.weight"])
    torch.testing.assert_close(phi["embed.weight"][0], theta["embed.weight"])


def test_adapt_path_checkpoints_are_prefixes_of_one_run():
    pop, model, theta = _setup(seed=6)
    batch = fixed_query_tasks(pop.responses, torch.arange(30), [4], n_query=5, seed=0)[4]
    path = FT.adapt_path(model, theta, batch, alpha=0.5, checkpoints=[0, 1, 4], adapt=ADAPT)
    assert sorted(path) == [0, 1, 4]
    assert torch.equal(path[0]["head.weight"][3], theta["head.weight"])  # 0 steps: θ itself
    alone = FT.adapt_path(model, theta, batch, alpha=0.5, checkpoints=[4], adapt=ADAPT)[4]
    assert torch.equal(alone["head.weight"], path[4]["head.weight"])
    pred = FT.fine_tune_predict(model, theta, batch, alpha=0.5, steps=4, adapt=ADAPT)
    assert torch.equal(pred, FT.predict_tasks(model, path[4], batch.x_query))


def test_tuning_picks_the_grid_point_with_the_lowest_validation_loss():
    pop, model, theta = _setup(seed=7, n=40)
    batch = fixed_query_tasks(pop.responses, torch.arange(40), [2], n_query=6, seed=1)[2]
    grid_a, grid_s = (0.1, 1.0, 3.0), (1, 3)
    alpha, steps, best = FT.tune_fine_tuning(model, theta, batch, alpha_grid=grid_a, steps_grid=grid_s, adapt=ADAPT)
    losses = {(a, s): query_log_loss(FT.fine_tune_predict(model, theta, batch, alpha=a, steps=s, adapt=ADAPT),
                                     batch.y_query) for a in grid_a for s in grid_s}
    assert best == pytest.approx(min(losses.values()), abs=1e-12) and losses[(alpha, steps)] == best
    tasks = fixed_query_tasks(pop.responses, torch.arange(40), [1, 2], n_query=6, seed=1)
    preds, hyper = FT.fine_tune_per_k(model, theta, tasks, tasks, alpha_grid=grid_a, steps_grid=grid_s,
                                      adapt=ADAPT, progress=False)
    assert list(preds) == [1, 2] and hyper[2] == {"alpha": alpha, "steps": steps, "validation_log_loss": best}


def test_objective_slice_meta_objective_is_the_maml_loss():
    pop, model, theta = _setup(seed=8)
    other = {name: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
             for name, v in theta.items()}
    batch = fixed_query_tasks(pop.responses, torch.arange(30), [4], n_query=5, seed=0)[4]
    sl = FT.objective_slice(model, theta, other, batch, alpha=0.5, steps=2, adapt=ADAPT)
    for t, end in ((0.0, theta), (1.0, other)):
        ref = maml_loss(model, end, batch, loss_fn=get_loss("bce"), alpha=0.5, steps=2, adapt=ADAPT).item()
        assert sl["meta_objective"][sl["t"].index(t)] == pytest.approx(ref, rel=1e-4)


def test_bad_inputs_raise_clear_errors():
    pop, model, theta = _setup()
    with pytest.raises(ValueError, match="checkpoints"):
        FT.adapt_path(LearnerModel(pop.public_features), {}, TaskBatch(*(torch.zeros(1, 1),) * 4),
                      alpha=0.1, checkpoints=[])
    with pytest.raises(ValueError, match="alpha_grid"):
        batch = fixed_query_tasks(pop.responses, torch.arange(30), [1], n_query=2)[1]
        FT.tune_fine_tuning(model, theta, batch, alpha_grid=(0.0,), steps_grid=(1,))
    with pytest.raises(ValueError, match="at least one learner"):
        FT.pretrain(model, pop.responses, torch.arange(0))
    with pytest.raises(ValueError, match="alpha"):
        FT.PretrainFinetune(5).predict(torch.zeros(1, 1).long(), torch.ones(1, 1), None, torch.ones(1, 1).long(),
                                       alpha=0.0)
    assert isinstance(FT.PretrainFinetune(5).model, MetaIRT)
