"""TaskBatch validation and the three samplers (sinusoid, N-way K-shot, learner x item)."""

import math

import pytest
import torch

from course_lib.tasks import TaskBatch, learner_tasks, sample_episodes, sample_sinusoid_tasks


def test_sinusoid_distributions_and_shapes():
    b, amp, phase = sample_sinusoid_tasks(500, 10, 7, generator=torch.Generator().manual_seed(0))
    assert b.x_support.shape == (500, 10, 1) and b.y_query.shape == (500, 7, 1)
    assert 0.1 <= amp.min() and amp.max() <= 5.0 and 0 <= phase.min() and phase.max() <= math.pi
    assert b.x_support.abs().max() <= 5.0
    torch.testing.assert_close(b.y_support, amp[:, None, None] * torch.sin(b.x_support - phase[:, None, None]))


def test_sinusoid_is_seeded():
    a = sample_sinusoid_tasks(3, 5, generator=torch.Generator().manual_seed(4))[0]
    b = sample_sinusoid_tasks(3, 5, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(a.x_support, b.x_support)


def test_episodes_relabel_and_do_not_overlap():
    x = torch.arange(100).float()[:, None]
    y = torch.arange(100) // 10  # 10 classes x 10 examples
    b = sample_episodes(x, y, n_way=5, k_shot=3, n_query=4, n_tasks=6, generator=torch.Generator().manual_seed(0))
    assert b.x_support.shape == (6, 15, 1) and b.y_query.shape == (6, 20)
    assert set(b.y_support.unique().tolist()) == set(range(5))
    for t in range(6):
        s, q = set(b.x_support[t].flatten().tolist()), set(b.x_query[t].flatten().tolist())
        assert not s & q
        for xs, ys in ((b.x_support[t], b.y_support[t]), (b.x_query[t], b.y_query[t])):
            orig = (xs.flatten() // 10).long()  # true class of each example
            for lab in range(5):  # one true class per episode label
                assert orig[ys == lab].unique().numel() == 1


def test_episode_errors():
    x, y = torch.zeros(20, 2), torch.arange(20) // 10
    with pytest.raises(ValueError, match="only 2 classes"):
        sample_episodes(x, y, 3, 1, 1)
    with pytest.raises(ValueError, match="lower k_shot"):
        sample_episodes(x, y, 2, 8, 5)
    with pytest.raises(ValueError, match="integer"):
        sample_episodes(x, y.float(), 2, 1, 1)


def test_learner_tasks_never_use_missing_answers_and_keep_support_out_of_query():
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(50, 30, generator=g) < 0.6).float()
    r[torch.rand(50, 30, generator=g) < 0.3] = float("nan")
    r[:, :5] = 1.0  # every learner has >= 5 answers
    b = learner_tasks(r, k_shot=3, generator=g)
    for i in range(50):
        s = b.x_support[i].tolist(); q = b.x_query[i][b.query_mask[i]].tolist()
        assert not set(s) & set(q)
        assert all(not math.isnan(r[i, j]) for j in s + q)
        assert len(s) + len(q) == int((~r[i].isnan()).sum())
        torch.testing.assert_close(b.y_support[i], r[i, b.x_support[i]])


def test_learner_tasks_errors():
    r = torch.full((3, 5), float("nan")); r[:, :2] = 1.0
    with pytest.raises(ValueError, match="needs at least 3 answered"):
        learner_tasks(r, k_shot=2)
    with pytest.raises(ValueError, match="learners, items"):
        learner_tasks(torch.zeros(5), k_shot=1)


def test_taskbatch_validation():
    z = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="NaN"):
        TaskBatch(z + float("nan"), z, z, z)
    with pytest.raises(ValueError, match="same number of tasks"):
        TaskBatch(z, z, torch.zeros(3, 3, 1), torch.zeros(3, 3, 1))
    with pytest.raises(ValueError, match="empty"):
        TaskBatch(torch.zeros(2, 0, 1), torch.zeros(2, 0, 1), z, z)
    with pytest.raises(ValueError, match="query_mask"):
        TaskBatch(z, z, z, z, query_mask=torch.ones(2, 3))


def test_permutation_is_a_seeded_permutation_from_either_library():
    import numpy as np

    from course_lib.tasks import permutation, shuffled

    for n in (0, 1, 7, 100):
        p = permutation(n, torch.Generator().manual_seed(4))
        assert sorted(p.tolist()) == list(range(n))
        assert torch.equal(p, torch.randperm(n, generator=torch.Generator().manual_seed(4)))
        q = permutation(n, np.random.default_rng(4))
        assert sorted(q.tolist()) == list(range(n))
        assert np.array_equal(q, np.random.default_rng(4).permutation(n))
        values = np.arange(n) * 10 + 3
        assert np.array_equal(shuffled(values, np.random.default_rng(2)), np.random.default_rng(2).permutation(values))
    assert not torch.equal(permutation(50, torch.Generator().manual_seed(0)),
                           permutation(50, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="generator must be"):
        permutation(3, 0)
    with pytest.raises(ValueError, match="non-negative integer"):
        permutation(-1, torch.Generator())


# ------------------------------------------------------------ a learner as a 2-way episode (chapter 03, section 8)

def _responses(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = (torch.rand(30, 40, generator=g) < 0.55).float()
    r[torch.rand(30, 40, generator=g) < 0.1] = float("nan")
    return r


def test_learner_episodes_balanced_nested_supports_and_one_fixed_query():
    from course_lib.tasks import episode_learners, learner_episodes

    r = _responses()
    learners = episode_learners(r, 4)
    eps = learner_episodes(r, (1, 2, 4), learners, seed=3)
    for k, b in eps.items():
        assert b.x_support.shape == (len(learners), 2 * k)
        assert torch.equal(b.y_support, torch.tensor([0] * k + [1] * k).expand_as(b.y_support))
        rows = r[learners]
        assert torch.equal(rows.gather(1, b.x_support), b.y_support.float())  # labels are the answers
        assert torch.equal(b.x_query, eps[4].x_query)  # the same query for every K
        assert torch.equal(b.x_support[:, :k], eps[4].x_support[:, :k])  # nested: wrong answers first K
        assert torch.equal(b.x_support[:, k:], eps[4].x_support[:, 4:4 + k])  # nested: right answers
    b = eps[4]
    for i in range(len(learners)):
        q = b.x_query[i][b.query_mask[i]]
        answered = torch.nonzero(~torch.isnan(r[learners[i]])).flatten()
        assert set(q.tolist()) | set(b.x_support[i].tolist()) == set(answered.tolist())
        assert not set(q.tolist()) & set(b.x_support[i].tolist())
        assert torch.equal(b.y_query[i][b.query_mask[i]], r[learners[i], q].long())


def test_learner_episodes_refuses_k_larger_than_a_learners_answers():
    from course_lib.tasks import episode_learners, learner_episodes

    r = _responses()
    r[0, :] = 1.0
    r[0, :2] = 0.0  # two wrong answers only
    assert 0 not in episode_learners(r, 3).tolist() and 0 in episode_learners(r, 2).tolist()
    with pytest.raises(ValueError, match="learner 0 has 38 right and 2 wrong"):
        learner_episodes(r, (1, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="k_shots"):
        learner_episodes(r, (0,), torch.tensor([1]))
