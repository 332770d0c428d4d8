"""Computerized adaptive testing (chapter 07, part A): splits, selection rules, models, no leakage."""

import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.baselines.irt import eap_ability_batch, posterior_predictive_batch
from course_lib.adaptive.cat import (CATSplit, IRTModel, MetaCATModel, run_cat, select_items,
                            split_items, summarize_cat, synthetic_learners)
from course_lib.models.meta_irt import MetaIRT

N_ITEMS = 40


@pytest.fixture(scope="module")
def bank():
    g = torch.Generator().manual_seed(0)
    a = 0.5 + 1.5 * torch.rand(N_ITEMS, generator=g)
    b = torch.randn(N_ITEMS, generator=g)
    return a, b


@pytest.fixture(scope="module")
def learners(bank):
    r, theta = synthetic_learners(*bank, 300, seed=1)
    r[torch.rand(r.shape, generator=torch.Generator().manual_seed(2)) < 0.1] = float("nan")  # some missing
    return r, theta


# ----------------------------------------------------------------------------- split

def test_split_is_disjoint_inside_the_answers_and_sized(learners):
    r, _ = learners
    sp = split_items(r, n_steps=10, holdout_frac=0.25, seed=0)
    answered = ~torch.isnan(r)
    assert not (sp.pool & sp.heldout).any()
    assert torch.equal(sp.pool | sp.heldout, answered)
    expected = (answered.sum(1).float() * 0.25).round().clamp_min(1)
    assert torch.equal(sp.heldout.sum(1).float(), expected)
    assert torch.equal(split_items(r, 10, 0.25, seed=0).heldout, sp.heldout)


@pytest.mark.parametrize("kwargs, match", [(dict(n_steps=50), "too few"),
                                           (dict(n_steps=5, holdout_frac=1.0), "holdout_frac"),
                                           (dict(n_steps=0), "n_steps")])
def test_split_rejects_bad_input(learners, kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_items(learners[0], **kwargs)


def test_responses_must_be_binary():
    with pytest.raises(ValueError, match="0 \\(incorrect\\), 1"):
        split_items(torch.full((3, 30), 2.0), n_steps=5)
    with pytest.raises(ValueError, match="matrix"):
        split_items(torch.zeros(30), n_steps=5)


# ----------------------------------------------------------------------------- selection

def test_max_fisher_picks_the_argmax_of_a2_p_1mp(bank):
    a, b = bank
    theta = torch.tensor([-1.5, 0.0, 0.7, 2.0])
    p = torch.sigmoid(a * (theta[:, None] - b))
    info = a ** 2 * p * (1 - p)
    available = torch.rand(4, N_ITEMS, generator=torch.Generator().manual_seed(3)) < 0.5
    chosen = select_items("max_information", available, info)
    for i in range(4):
        best = max((j for j in range(N_ITEMS) if available[i, j]), key=lambda j: float(info[i, j]))
        assert int(chosen[i]) == best


def test_random_rule_picks_only_available_items():
    available = torch.zeros(200, N_ITEMS, dtype=torch.bool)
    available[:, [3, 17, 21]] = True
    chosen = select_items("random", available, generator=torch.Generator().manual_seed(0))
    assert set(chosen.tolist()) == {3, 17, 21}


def test_selection_rejects_bad_input():
    available = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="rule"):
        select_items("greedy", available)
    with pytest.raises(ValueError, match="information of shape"):
        select_items("max_information", available, torch.ones(2, 4))
    with pytest.raises(ValueError, match="no item left"):
        select_items("random", torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        select_items("random", torch.ones(2, 5))


# ----------------------------------------------------------------------------- models

def test_irt_model_agrees_with_chapter_05_eap_and_posterior_predictive(bank, learners):
    a, b = bank
    r, _ = learners
    model = IRTModel(a, b)
    items = torch.tensor([[0, 5, 9], [1, 2, 3], [7, 7, 30]])
    answers = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    state = model.begin(3)
    for n in range(3):
        state = model.observe(state, items[:, n], answers[:, n])
    mean, _ = eap_ability_batch(a, b, items, answers)
    torch.testing.assert_close(model.ability(state), mean, atol=1e-5, rtol=0)
    everything = torch.arange(N_ITEMS).expand(3, N_ITEMS)
    torch.testing.assert_close(model.predict(state), posterior_predictive_batch(a, b, items, answers, None, everything),
                               atol=1e-5, rtol=0)
    p = torch.sigmoid(a * (mean[:, None] - b))
    torch.testing.assert_close(model.information(state), a ** 2 * p * (1 - p), atol=1e-4, rtol=0)


def test_grouped_irt_model_is_one_independent_2pl_per_group(bank):
    a, b = bank
    groups = torch.arange(N_ITEMS) % 2
    both = IRTModel(a, b, groups=groups)
    sep = [IRTModel(a[groups == g], b[groups == g]) for g in (0, 1)]
    local = torch.cumsum(torch.nn.functional.one_hot(groups), 0)[torch.arange(N_ITEMS), groups] - 1
    items = torch.tensor([[0, 1, 2, 5], [3, 3, 8, 9]])
    answers = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
    state = both.begin(2)
    for n in range(4):
        state = both.observe(state, items[:, n], answers[:, n])
    for g in (0, 1):
        s = sep[g].begin(1)
        for i in range(2):
            s = sep[g].begin(1)
            for j, y in zip(items[i], answers[i]):
                if groups[j] == g:
                    s = sep[g].observe(s, local[j][None], y[None])
            assert float(both.ability(state)[i, g]) == pytest.approx(float(sep[g].ability(s)[0]), abs=1e-6)
            torch.testing.assert_close(both.predict(state)[i, groups == g], sep[g].predict(s)[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(both.information(state)[i, groups == g], sep[g].information(s)[0],
                                       atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="groups"):
        IRTModel(a, b, groups=torch.zeros(3))


@pytest.mark.parametrize("dims", [1, 2])
def test_meta_information_is_p_1mp_times_squared_loadings(dims):
    model = MetaIRT(N_ITEMS, dims=dims, seed=0)
    maml = MAML(model, loss="bce", alpha=0.5, steps=2, adapt=["ability"])
    meta = MetaCATModel(maml, N_ITEMS)
    state = meta.begin(3)
    state = meta.observe(state, torch.tensor([0, 4, 9]), torch.tensor([1.0, 0.0, 1.0]))
    info = meta.information(state)
    phi = state["phi"]["ability"]                                   # [3, dims]
    logits = phi @ model.item_a.detach().T + model.item_d.detach()
    p = torch.sigmoid(logits)
    expected = p * (1 - p) * model.item_a.detach().pow(2).sum(1)
    torch.testing.assert_close(info, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(meta.predict(state), p, atol=1e-5, rtol=1e-5)
    assert not torch.equal(phi[0], phi[1])                          # adapted per learner


# ----------------------------------------------------------------------------- the test

def test_no_leakage_and_determinism(bank, learners):
    a, b = bank
    r, _ = learners
    sp = split_items(r, n_steps=12, seed=0)
    model = IRTModel(a, b)
    for rule in ("random", "max_information"):
        tr = run_cat(model, r, sp, rule, n_steps=12, seed=0)
        rows = torch.arange(len(r))[:, None]
        assert sp.pool[rows, tr.asked].all()                        # only pool items are asked
        assert not sp.heldout[rows, tr.asked].any()                 # held-out items never asked
        assert all(len(set(row.tolist())) == 12 for row in tr.asked)   # never the same item twice
        torch.testing.assert_close(tr.answers, r[rows, tr.asked])
        assert torch.isnan(tr.heldout_prob[:, ~sp.heldout]).all()
        assert not torch.isnan(tr.heldout_prob[:, sp.heldout]).any()
        again = run_cat(model, r, sp, rule, n_steps=12, seed=0)
        assert torch.equal(tr.asked, again.asked)


def test_first_max_fisher_item_is_the_most_informative_at_the_prior_mean(bank, learners):
    a, b = bank
    r, _ = learners
    sp = split_items(r, n_steps=5, seed=0)
    tr = run_cat(IRTModel(a, b), r, sp, "max_information", n_steps=1)
    info0 = a ** 2 * torch.sigmoid(-a * b) * (1 - torch.sigmoid(-a * b))
    expected = torch.where(sp.pool, info0, -1.0).argmax(1)
    assert torch.equal(tr.asked[:, 0], expected)


def test_max_fisher_estimates_ability_better_than_random(bank):
    a, b = bank
    r, theta = synthetic_learners(a, b, 400, seed=5)
    sp = split_items(r, n_steps=10, seed=0)
    model = IRTModel(a, b)
    res = {rule: summarize_cat(run_cat(model, r, sp, rule, n_steps=10, seed=0), r, sp, theta, n_boot=20)
           for rule in ("random", "max_information")}
    assert res["max_information"]["ability_rmse"].iloc[-1] < res["random"]["ability_rmse"].iloc[-1]
    assert res["random"]["ability_rmse"].iloc[-1] < res["random"]["ability_rmse"].iloc[0]   # more items help
    assert res["random"]["auc"].between(0.5, 1).all()
    assert (res["random"]["auc_lo"] <= res["random"]["auc"]).all()


def test_run_cat_rejects_leaky_or_bad_input(bank, learners):
    a, b = bank
    r, _ = learners
    sp = split_items(r, n_steps=5, seed=0)
    model = IRTModel(a, b)
    leaky = CATSplit(pool=sp.pool | sp.heldout, heldout=sp.heldout)
    with pytest.raises(ValueError, match="leak"):
        run_cat(model, r, leaky, "random", n_steps=5)
    missing = CATSplit(pool=torch.ones_like(sp.pool) & ~sp.heldout, heldout=sp.heldout)
    with pytest.raises(ValueError, match="did not answer"):
        run_cat(model, r, missing, "random", n_steps=5)
    with pytest.raises(ValueError, match="n_steps"):
        run_cat(model, r, sp, "random", n_steps=100)
    meta = MetaCATModel(MAML(MetaIRT(N_ITEMS), loss="bce", alpha=0.5, adapt=["ability"]), N_ITEMS)
    with pytest.raises(ValueError, match="scorer"):
        run_cat(meta, r, sp, "random", n_steps=5)
    with pytest.raises(ValueError, match="NaN"):
        IRTModel(torch.tensor([1.0, float("nan")]), torch.zeros(2))
