"""course_lib.models.amortized: the set encoder, the students, the teacher wrapper, distillation."""

from __future__ import annotations

import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.models.amortized import (AmortizedAdapter, AnswerSetEncoder, GradientTeacher, SmallStudent,
                                         build_student, check_answers, distill, distillation_loss,
                                         sample_answer_sets)
from course_lib.models.meta_irt import MetaIRT

N_ITEMS, DIMS = 10, 2


def _answers(b: int = 4, n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(N_ITEMS, (b, n), generator=g), torch.randint(2, (b, n), generator=g).float(), torch.ones(b, n)


def _teacher(ks=(1, 5)) -> GradientTeacher:
    states = {}
    for k in ks:
        m = MetaIRT(N_ITEMS, DIMS, seed=k)
        m.ability.data = torch.tensor([0.3, -0.2]) * k
        states[k] = m.state_dict()
    return GradientTeacher(states, alpha=1.0, steps=3)


def test_encoder_is_order_and_padding_invariant():
    enc = AnswerSetEncoder(N_ITEMS, 5)
    items, answers, mask = _answers()
    perm = torch.randperm(items.shape[1], generator=torch.Generator().manual_seed(1))
    out = enc(items, answers, mask)
    assert torch.allclose(out, enc(items[:, perm], answers[:, perm], mask[:, perm]), atol=1e-6)
    padded = enc(torch.cat([items, torch.zeros(4, 3, dtype=torch.long)], 1),
                 torch.cat([answers, torch.ones(4, 3)], 1), torch.cat([mask, torch.zeros(4, 3)], 1))
    assert torch.allclose(out, padded, atol=1e-6)
    assert torch.allclose(out[:, -1], torch.log1p(torch.tensor(6.0)))
    empty = enc(items[:, :1], answers[:, :1], torch.zeros(4, 1))
    assert torch.equal(empty, torch.zeros(4, 6))            # no answer: mean 0, log(1 + 0) = 0


def test_encoder_mean_can_hold_the_teachers_first_gradient_step():
    # The first inner gradient is a mean over answers of -a_j (y - p_j(θ)): an embedding table that
    # stores that vector per (item, answer) reproduces it exactly (the module docstring's claim).
    model = MetaIRT(N_ITEMS, DIMS, seed=3)
    p = torch.sigmoid(model(torch.arange(N_ITEMS)))
    enc = AnswerSetEncoder(N_ITEMS, DIMS)
    table = torch.stack([-model.item_a * (0 - p)[:, None], -model.item_a * (1 - p)[:, None]], 1)  # [items, 2, dims]
    enc.embed.weight.data = table.reshape(2 * N_ITEMS, DIMS).detach()
    items, answers, mask = _answers(b=1)
    grad = torch.func.grad(lambda ab: torch.nn.functional.binary_cross_entropy_with_logits(
        model.item_a[items[0]] @ ab + model.item_d[items[0]], answers[0]))(model.ability.detach())
    assert torch.allclose(enc(items, answers, mask)[0, :DIMS], grad, atol=1e-5)


def test_adapter_is_its_ability_through_the_irt_head_and_starts_at_the_prior():
    t = _teacher()
    m = t.learners[5].model
    student = AmortizedAdapter(N_ITEMS, DIMS, width=4, hidden=8, item_a=m.item_a, item_d=m.item_d, ability=m.ability)
    items, answers, mask = _answers()
    phi = student.adapt(items, answers, mask)
    assert phi.shape == (4, DIMS)
    assert torch.allclose(student(items, answers, mask), phi @ m.item_a.T + m.item_d)
    assert torch.allclose(phi, m.ability.expand(4, -1))       # zero last layer: φ = θ before distillation


def test_students_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = SmallStudent(N_ITEMS, seed=7), SmallStudent(N_ITEMS, seed=7)
    assert torch.rand(1) == before
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="unknown student 'big'"):
        build_student("big", N_ITEMS, DIMS, {})


def test_distillation_loss_is_kl_plus_teacher_entropy_and_minimal_at_the_teacher():
    g = torch.Generator().manual_seed(0)
    pt = torch.rand(5, N_ITEMS, generator=g) * 0.9 + 0.05
    z = torch.randn(5, N_ITEMS, generator=g)
    ps = torch.sigmoid(z)
    kl = pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    entropy = -(pt * torch.log(pt) + (1 - pt) * torch.log(1 - pt))
    assert torch.allclose(distillation_loss(z, pt), (kl + entropy).mean(), atol=1e-6)
    z_star = torch.logit(pt).requires_grad_(True)
    distillation_loss(z_star, pt).backward()
    assert z_star.grad.abs().max() < 1e-7                      # the teacher's logits are the minimiser
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(z, pt[:, :3])


def test_teacher_adapts_like_maml_with_the_teacher_of_its_count():
    t = _teacher(ks=(1, 5))
    items, answers, mask = _answers(b=3, n=6)
    mask[0, 2:] = 0                                            # 2 answers -> the K = 1 teacher
    mask[2] = 0                                                # no answer -> the K = 1 teacher's prior
    out = t.logits(items, answers, mask > 0)
    for row, k, n in ((0, 1, 2), (1, 5, 6)):
        maml: MAML = t.learners[k]
        phi = maml.adapt(items[row, :n], answers[row, :n])
        assert torch.allclose(out[row], maml.predict(phi, torch.arange(N_ITEMS)), atol=1e-5)
    assert torch.allclose(out[2], t.learners[1].model(torch.arange(N_ITEMS)), atol=1e-6)
    assert t.for_count(0) is t.learners[1] and t.for_count(4) is t.learners[1] and t.for_count(9) is t.learners[5]
    rebuilt = GradientTeacher(t.states(), alpha=1.0, steps=3)
    assert torch.equal(rebuilt.logits(items, answers, mask > 0), out)


@pytest.mark.parametrize("bad, words", [
    (lambda i, a, m: (i + N_ITEMS, a, m), "item indices must lie in 0..9"),
    (lambda i, a, m: (i, a * 2, m), "answers must be 0"),
    (lambda i, a, m: (i.float(), a, m), "integer tensor"),
    (lambda i, a, m: (i, a[:, :2], m), "both be"),
    (lambda i, a, m: (i, a, m[:, :2]), "mask must have the shape"),
])
def test_bad_answers_are_rejected_with_a_message(bad, words):
    with pytest.raises(ValueError, match=words):
        check_answers(*bad(*_answers()), N_ITEMS)


def test_sample_answer_sets_uses_only_answered_items_of_the_given_learners():
    g = torch.Generator().manual_seed(0)
    r = torch.randint(2, (30, N_ITEMS), generator=g).float()
    r[torch.rand(r.shape, generator=g) < 0.2] = float("nan")
    learners = torch.arange(10)
    items, answers, mask = sample_answer_sets(r, learners, 64, 3, g)
    assert items.shape == answers.shape == mask.shape == (64, 3) and mask.eq(1).all()
    items0, _, mask0 = sample_answer_sets(r, learners, 8, 0, g)
    assert items0.shape == (8, 1) and mask0.eq(0).all()
    # every (item, answer) pair is some selected learner's real answer
    pairs = {(j, float(r[i, j])) for i in range(10) for j in range(N_ITEMS) if not torch.isnan(r[i, j])}
    assert all((int(j), float(y)) in pairs for j, y in zip(items.flatten(), answers.flatten()))


def test_distillation_brings_both_students_close_to_the_teacher():
    from course_lib.data.synthetic import sample_2pl

    t = _teacher(ks=(1, 5))
    r = sample_2pl(300, N_ITEMS, seed=0).responses
    learners = torch.arange(300)
    g = torch.Generator().manual_seed(5)
    items, answers, mask = sample_answer_sets(r, learners, 200, 4, g)
    target = torch.sigmoid(t.logits(items, answers, mask > 0))
    m = t.learners[5].model
    for student in (AmortizedAdapter(N_ITEMS, DIMS, width=16, hidden=32, item_a=m.item_a, item_d=m.item_d,
                                     ability=m.ability), SmallStudent(N_ITEMS, width=16, hidden=16)):
        before = (torch.sigmoid(student(items, answers, mask)) - target).abs().mean()
        history = distill(student, t, r, learners, steps=300, batch=64, max_answers=6, lr=1e-2, progress=False)
        after = (torch.sigmoid(student(items, answers, mask)) - target).abs().mean()
        assert history["loss"][-1] < history["loss"][0]
        assert after < 0.35 * before, (type(student).__name__, before, after)
