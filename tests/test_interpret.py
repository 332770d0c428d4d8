"""course_lib.interpret: exact support gradients vs Captum, IG completeness, item-parameter agreement, the card."""

from __future__ import annotations

import pytest
import torch

from course_lib import interpret
from course_lib.algorithms import MAML
from course_lib.baselines.irt import ItemParams
from course_lib.models.meta_irt import MetaIRT


@pytest.fixture(scope="module")
def learner():
    torch.manual_seed(0)
    model = MetaIRT(12, dims=2, init_d=torch.linspace(-1.5, 1.5, 12), seed=3)
    with torch.no_grad():
        model.ability.copy_(torch.tensor([0.3, -0.2]))
    return MAML(model, loss="bce", alpha=1.0, steps=3, adapt=["ability"])


XS, YS, XQ = torch.tensor([0, 3, 5, 8, 11]), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]), torch.tensor([1, 2, 7, 9])


def test_adapted_probability_matches_the_learners_own_adaptation(learner):
    phi = learner.adapt(XS, YS)
    want = torch.sigmoid(learner.predict(phi, XQ))
    assert torch.allclose(interpret.adapted_probability(learner, XS, YS, XQ), want, atol=1e-6)


def test_exact_gradient_matches_finite_differences(learner):
    jac = interpret.support_gradient(learner, XS, YS, XQ)
    assert jac.shape == (len(XQ), len(XS))
    eps = 1e-3
    for k in range(len(XS)):
        up, down = YS.clone().double(), YS.clone().double()
        up[k] += eps
        down[k] -= eps
        fd = (interpret.adapted_probability(learner, XS, up.float(), XQ)
              - interpret.adapted_probability(learner, XS, down.float(), XQ)) / (2 * eps)
        assert torch.allclose(jac[:, k], fd, atol=2e-3)


def test_captum_saliency_is_the_exact_gradient(learner):
    jac = interpret.support_gradient(learner, XS, YS, XQ)
    sal, _ = interpret.support_attributions(learner, XS, YS, XQ, method="saliency")
    assert torch.allclose(sal, jac, atol=1e-6)


def test_integrated_gradients_add_up_to_the_move_from_the_prior(learner):
    ig, delta = interpret.support_attributions(learner, XS, YS, XQ, n_steps=64)
    moved = (interpret.adapted_probability(learner, XS, YS, XQ)
             - interpret.expected_answers(learner, XQ)).detach()
    assert torch.allclose(ig.sum(1), moved, atol=1e-3)
    assert delta.abs().max() < 1e-3
    # the expected answers are a fixed point: adapting on them leaves θ, so the prior's predictions
    baseline = interpret.expected_answers(learner, XS)
    assert torch.allclose(interpret.adapted_probability(learner, XS, baseline, XQ),
                          interpret.expected_answers(learner, XQ), atol=1e-6)


def test_bad_shapes_and_methods_are_refused(learner):
    with pytest.raises(ValueError, match="ONE learner"):
        interpret.support_gradient(learner, XS[None], YS[None], XQ)
    with pytest.raises(ValueError, match="saliency"):
        interpret.support_attributions(learner, XS, YS, XQ, method="shap")


def test_item_parameter_agreement_recovers_a_known_2pl(learner):
    model = MetaIRT(6, dims=1)
    a, b = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.8, 1.2]), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    with torch.no_grad():
        model.item_a.copy_(a[:, None])
        model.item_d.copy_(-a * b)
    table, corr = interpret.item_parameter_agreement(model, ItemParams(a, b))
    assert torch.allclose(torch.tensor(table["b_meta"].to_numpy(), dtype=torch.float32), b, atol=1e-5)
    assert corr.set_index("parameter").loc["discrimination", "pearson"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same response matrix"):
        interpret.item_parameter_agreement(model, ItemParams(a[:3], b[:3]))


def test_why_card_names_the_strongest_answer(learner):
    attr = torch.tensor([[0.01, -0.30, 0.05], [0.20, 0.0, 0.0]])
    card = interpret.why_card(attr, ["A", "B", "C"], torch.tensor([1.0, 0.0, 1.0]), ["Q1", "Q2"],
                              torch.tensor([0.4, 0.7]), torch.tensor([0.6, 0.5]), top=1)
    lines = card.splitlines()
    assert "your 'no' to B (−0.30)" in lines[0] and "down 0.20 from 0.60" in lines[0]
    assert "your 'yes' to A (+0.20)" in lines[1]
    with pytest.raises(ValueError, match="n_query, K"):
        interpret.why_card(attr.T, ["A", "B", "C"], torch.zeros(3), ["Q1", "Q2"], torch.zeros(2), torch.zeros(2))
