"""Bad input, as a table: for each public entry point, the bad inputs tried and the error each gets.

Every row is (entry point, what is wrong, the call, the exception type, a pattern the message must
match). The message must say what is wrong in the learner's terms (the parameter's name, what to do),
never a deep torch error or a silent wrong number. The exercise checks and the studies' command
lines are enumerated (every ``check_*`` of course_lib.exercises.chNN, every study's ``--set``), so new
ones are covered as they appear. Hypothesis draws shapes and values for the core algorithms.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import course_lib.exercises as exercises
import course_lib.experiments as experiments
from course_lib import distributed, metrics
from course_lib.algorithms import MAML, ProtoMAML, ProtoNet, Reptile
from course_lib.checkpoint import load_checkpoint
from course_lib.data.responses import item_statistics, load_study_data, split_learners, validate_responses
from course_lib.distances import get_distance, mahalanobis, squared_euclidean
from course_lib.distributed import DistConfig
from course_lib.exercises import ExerciseError
from course_lib.experiments.common import Registry, load_json, parse_setting
from course_lib.tasks import TaskBatch, episode_learners, learner_episodes, learner_tasks, sample_episodes


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))


def batch(n_tasks: int = 2, k: int = 3, q: int = 4) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    return TaskBatch(torch.randn(n_tasks, k, 1, generator=g), torch.randn(n_tasks, k, 1, generator=g),
                     torch.randn(n_tasks, q, 1, generator=g), torch.randn(n_tasks, q, 1, generator=g))


RESP = torch.tensor([[1.0, 0.0, float("nan"), 1.0], [0.0, 1.0, 1.0, float("nan")], [1.0, 1.0, 0.0, 0.0]])
X_IRIS, Y_IRIS = torch.randn(30, 2, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3
EPISODES = sample_episodes(X_IRIS, Y_IRIS, 3, 2, 2, 2, generator=torch.Generator().manual_seed(0))


def write(tmp_path, text: str):
    path = tmp_path / "result.json"
    path.write_text(text)
    return path


# (entry point, what is wrong, call(tmp_path), exception, message pattern)
CASES = [
    # algorithms
    ("MAML", "zero inner step size", lambda t: MAML(net(), alpha=0.0), ValueError, "alpha"),
    ("MAML", "negative inner step size", lambda t: MAML(net(), alpha=-0.1), ValueError, "alpha"),
    ("MAML", "NaN inner step size", lambda t: MAML(net(), alpha=float("nan")), ValueError, "alpha"),
    ("MAML", "infinite inner step size", lambda t: MAML(net(), alpha=float("inf")), ValueError, "alpha"),
    ("MAML", "negative steps", lambda t: MAML(net(), steps=-1), ValueError, "steps"),
    ("MAML", "not a module", lambda t: MAML("net"), ValueError, "nn.Module"),
    ("MAML", "unknown loss name", lambda t: MAML(net(), loss="hinge_loss_xyz"), ValueError, "(?i)loss"),
    ("MAML.adapt", "support x/y lengths differ",
     lambda t: MAML(net()).adapt(torch.randn(3, 1), torch.randn(4, 1)), ValueError, "(?i)support|shape"),
    ("MAML.adapt", "empty support set",
     lambda t: MAML(net()).adapt(torch.randn(0, 1), torch.randn(0, 1)), ValueError, "(?i)empty|support"),
    ("MAML.adapt", "NaN in the support set",
     lambda t: MAML(net()).adapt(torch.tensor([[float("nan")]] * 3), torch.randn(3, 1)), ValueError, "NaN"),
    ("MAML.adapt", "wrong feature width",
     lambda t: MAML(net()).adapt(torch.randn(3, 2), torch.randn(3, 1)), ValueError, "(?i)shape|feature"),
    ("Reptile", "zero inner step size", lambda t: Reptile(net(), alpha=0.0), ValueError, "alpha"),
    ("Reptile", "negative steps", lambda t: Reptile(net(), steps=-2), ValueError, "steps"),
    ("ProtoNet", "unknown distance", lambda t: ProtoNet(nn.Identity(), "manhattan_xyz"), ValueError, "(?i)distance"),
    ("ProtoMAML", "zero inner step size", lambda t: ProtoMAML(nn.Identity(), alpha=0.0), ValueError, "alpha"),
    ("ProtoMAML", "negative steps", lambda t: ProtoMAML(nn.Identity(), steps=-1), ValueError, "steps"),
    ("ProtoMAML", "not a module", lambda t: ProtoMAML("net"), ValueError, "nn.Module"),
    ("ProtoMAML.meta_loss", "a class with no support example",
     lambda t: ProtoMAML(nn.Identity()).meta_loss(EPISODES, n_way=4), ValueError, "class 3 has no support example"),
    ("ProtoMAML.meta_loss", "float labels",
     lambda t: ProtoMAML(nn.Identity()).meta_loss(TaskBatch(EPISODES.x_support, EPISODES.y_support.float(),
                                                            EPISODES.x_query, EPISODES.y_query)),
     ValueError, "integer class labels"),
    ("ProtoMAML.meta_loss", "infinite features",
     lambda t: ProtoMAML(nn.Identity()).meta_loss(TaskBatch(EPISODES.x_support * float("inf"), EPISODES.y_support,
                                                            EPISODES.x_query, EPISODES.y_query)),
     ValueError, "infinite"),
    ("ProtoMAML.logits", "NaN features (caught by TaskBatch)",
     lambda t: ProtoMAML(nn.Identity()).logits(TaskBatch(EPISODES.x_support * float("nan"), EPISODES.y_support,
                                                         EPISODES.x_query, EPISODES.y_query)),
     ValueError, "NaN"),
    # task batches and samplers
    ("TaskBatch", "NaN in the query targets",
     lambda t: TaskBatch(torch.randn(2, 3, 1), torch.randn(2, 3, 1), torch.randn(2, 4, 1),
                         torch.full((2, 4, 1), float("nan"))), ValueError, "NaN"),
    ("TaskBatch", "different task counts",
     lambda t: TaskBatch(torch.randn(2, 3, 1), torch.randn(3, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 4, 1)),
     ValueError, "tasks"),
    ("TaskBatch", "a list instead of a tensor",
     lambda t: TaskBatch([[1.0]], torch.randn(2, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 4, 1)),
     ValueError, "torch.Tensor"),
    ("TaskBatch", "no example dimension",
     lambda t: TaskBatch(torch.randn(2), torch.randn(2, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 4, 1)),
     ValueError, "shape"),
    ("sample_episodes", "K larger than a class", lambda t: sample_episodes(X_IRIS, Y_IRIS, 3, 20, 5), ValueError,
     "(?i)k_shot|examples|class"),
    ("sample_episodes", "more classes than the data has", lambda t: sample_episodes(X_IRIS, Y_IRIS, 5, 1, 1),
     ValueError, "(?i)n_way|class"),
    ("sample_episodes", "zero shots", lambda t: sample_episodes(X_IRIS, Y_IRIS, 3, 0, 1), ValueError, "k_shot"),
    ("learner_tasks", "K larger than a learner's answers", lambda t: learner_tasks(RESP, k_shot=4), ValueError,
     "(?i)k_shot|answer"),
    ("learner_tasks", "negative K", lambda t: learner_tasks(RESP, k_shot=-1), ValueError, "k_shot"),
    ("learner_episodes", "K larger than a learner's wrong answers",
     lambda t: learner_episodes(RESP, (2,), torch.tensor([0, 2])), ValueError, "K = 2 per class needs"),
    ("learner_episodes", "K = 0", lambda t: learner_episodes(RESP, (0,), torch.tensor([2])), ValueError, "k_shots"),
    ("episode_learners", "K = 0", lambda t: episode_learners(RESP, 0), ValueError, "k_shot"),
    # data loaders
    ("load_study_data", "unknown data set", lambda t: load_study_data("mnist"), ValueError, "(?i)dataset|choose"),
    ("validate_responses", "answers coded 1/2 instead of 0/1",
     lambda t: validate_responses(torch.tensor([[1.0, 2.0], [2.0, 1.0]])), ValueError, "(?i)0|1"),
    ("validate_responses", "missing answers coded -1",
     lambda t: validate_responses(torch.tensor([[1.0, -1.0], [0.0, 1.0]])), ValueError, "(?i)nan|missing|0"),
    ("validate_responses", "infinite values",
     lambda t: validate_responses(torch.tensor([[1.0, float("inf")], [0.0, 1.0]])), ValueError, "(?i)inf|0"),
    ("validate_responses", "one dimension", lambda t: validate_responses(torch.tensor([1.0, 0.0])), ValueError,
     "(?i)learners|shape|2"),
    ("split_learners", "fractions that do not sum to 1", lambda t: split_learners(10, (0.5, 0.5, 0.5)), ValueError,
     "(?i)fraction|sum"),
    # distances
    ("get_distance", "unknown distance", lambda t: get_distance("hamming_xyz"), ValueError, "(?i)distance|choose"),
    ("squared_euclidean", "feature widths differ",
     lambda t: squared_euclidean(torch.randn(2, 3), torch.randn(2, 4)), ValueError, "(?i)feature|shape"),
    ("mahalanobis", "no covariance and no precision",
     lambda t: mahalanobis(torch.randn(1, 2, 3), torch.randn(1, 2, 3)), ValueError, "(?i)cov|precision"),
    # metrics
    ("metrics.auc", "lengths differ", lambda t: metrics.auc([0, 1, 1], [0.2, 0.4]), ValueError,
     "values but the predictions have"),
    ("metrics.auc", "empty query set", lambda t: metrics.auc([], []), ValueError, "(?i)empty"),
    ("metrics.auc", "NaN probabilities", lambda t: metrics.auc([0, 1], [float("nan"), 0.5]), ValueError, "NaN"),
    ("metrics.log_loss", "probabilities above 1", lambda t: metrics.log_loss([0, 1], [0.5, 1.7]), ValueError,
     "(?i)probab|\\[0, 1\\]"),
    ("metrics.log_loss", "labels 1/2", lambda t: metrics.log_loss([1, 2], [0.5, 0.5]), ValueError, "(?i)0|1|label"),
    ("metrics.row_auc", "scores and answers of different shapes",
     lambda t: metrics.row_auc(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, "shape"),
    ("item_statistics", "answers coded 1/2", lambda t: item_statistics(torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
     ValueError, "0 \\(incorrect\\)"),
    ("metrics.mean_ci", "no values", lambda t: metrics.mean_ci([]), ValueError, "(?i)empty|value"),
    ("metrics.ndcg_at_k", "k = 0", lambda t: metrics.ndcg_at_k([1, 2, 3], [0.1, 0.2, 0.3], k=0), ValueError, "k"),
    # experiments: results files, registries, settings
    ("load_json", "missing results file", lambda t: load_json(t / "nope.json"), FileNotFoundError, "(?i)CLI"),
    ("load_json", "truncated results file", lambda t: load_json(write(t, '{"study": "x", "rows": [')), ValueError,
     "(?i)corrupted|truncated"),
    ("load_json", "a list, not a result", lambda t: load_json(write(t, "[1, 2]")), ValueError, "(?i)results"),
    ("load_json", "keys missing", lambda t: load_json(write(t, json.dumps({"study": "x"}))), ValueError,
     "(?i)missing"),
    ("Registry", "unknown method name", lambda t: Registry("method")["mamll"], ValueError, "(?i)choose from"),
    # data-parallel meta-training and its checkpoints (chapter 08)
    ("distributed.train", "unknown algorithm", lambda t: distributed.train(DistConfig(algo="sgd")), ValueError,
     "(?i)unknown algorithm"),
    ("distributed.train", "zero iterations", lambda t: distributed.train(DistConfig(iterations=0)), ValueError,
     "iterations"),
    ("distributed.train", "--resume without a checkpoint", lambda t: distributed.train(DistConfig(resume=True)),
     ValueError, "--resume needs --checkpoint"),
    ("distributed.train", "resume from a missing checkpoint",
     lambda t: distributed.train(DistConfig(resume=True, checkpoint=str(t / "none.pt"))), FileNotFoundError,
     "start without --resume"),
    ("distributed.check_world", "meta-batch not divisible by the world size", lambda t: distributed.check_world(10, 4),
     ValueError, "use --meta-batch 12"),
    ("distributed.check_world", "more ranks than tasks", lambda t: distributed.check_world(2, 4), ValueError,
     "more ranks"),
    ("distributed.launch", "unknown launcher", lambda t: distributed.launch(DistConfig(), launcher="mpirun"),
     ValueError, "unknown launcher"),
    ("distributed.launch", "fork launcher on CUDA", lambda t: distributed.launch(DistConfig(), launcher="fork",
                                                                                device="cuda"),
     ValueError, "use launcher='torchrun'"),
    ("distributed.fork_workers", "zero processes", lambda t: distributed.fork_workers(DistConfig(), 0), ValueError,
     "at least 1 process"),
    ("load_checkpoint", "corrupted checkpoint file",
     lambda t: load_checkpoint((t / "ck.pt").write_bytes(b"not a checkpoint") and t / "ck.pt"), ValueError,
     "corrupted"),
]


@pytest.mark.parametrize("entry, wrong, call, exc, pattern", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(entry, wrong, call, exc, pattern, tmp_path):
    with pytest.raises(exc, match=pattern) as info:
        call(tmp_path)
    assert len(str(info.value)) >= 15, f"{entry} ({wrong}): the message {str(info.value)!r} is too short to help"
    frames = [f for f in info.traceback if "site-packages" in str(f.path) and "torch" in str(f.path)]
    assert not frames, f"{entry} ({wrong}): raised from inside torch, not checked at the boundary"


# ---- every study: unknown methods and bad settings, in run() and on the command line --------------------
STUDIES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                 if m.name != "common" and hasattr(importlib.import_module(f"course_lib.experiments.{m.name}"), "main"))


@pytest.mark.parametrize("study", STUDIES)
def test_study_cli_rejects_an_unknown_setting(study, capsys):
    module = importlib.import_module(f"course_lib.experiments.{study}")
    with pytest.raises(SystemExit) as info:
        module.main(["--set", "no_such_setting=1", "--no-progress"])
    assert info.value.code == 2
    assert "unknown setting 'no_such_setting'" in capsys.readouterr().err


@pytest.mark.parametrize("study", STUDIES)
def test_study_cli_rejects_a_badly_typed_setting(study, capsys):
    module = importlib.import_module(f"course_lib.experiments.{study}")
    import dataclasses
    numeric = [f.name for f in dataclasses.fields(module.Config) if isinstance(getattr(module.Config(), f.name), int)
               and not isinstance(getattr(module.Config(), f.name), bool)]
    if not numeric:
        pytest.skip(f"{study} has no integer setting")
    with pytest.raises(SystemExit):
        module.main(["--set", f"{numeric[0]}=many", "--no-progress"])
    assert f"{numeric[0]} must be a int" in capsys.readouterr().err


@pytest.mark.parametrize("study", STUDIES)
def test_study_run_rejects_an_unknown_method(study):
    module = importlib.import_module(f"course_lib.experiments.{study}")
    import dataclasses
    fields = {f.name for f in dataclasses.fields(module.Config)}
    name = next((n for n in ("methods", "policies", "variants") if n in fields), None)
    if name is None:
        pytest.skip(f"{study} has no list of methods")
    with pytest.raises(ValueError, match="(?i)unknown|choose|must name"):
        config = module.Config(**{name: ("no_such_method",)})
        module.run(config, progress=False)


def test_parse_setting_rejects_a_bad_boolean():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class C:
        flag: bool = False

    with pytest.raises(ValueError, match="true/false"):
        parse_setting(C, "flag=perhaps")


# ---- every exercise check: a wrong answer and a crashing answer are clear failures, not tracebacks ------
CHECKS = [(m.name, name, fn) for m in pkgutil.iter_modules(exercises.__path__)
          for name, fn in inspect.getmembers(importlib.import_module(f"course_lib.exercises.{m.name}"), inspect.isfunction)
          if name.startswith("check_") and fn.__module__ == f"course_lib.exercises.{m.name}"
          and len([p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]) == 1]


def crash(*args, **kwargs):
    raise ZeroDivisionError("the reader's bug")


@pytest.mark.parametrize("chapter, name, check", CHECKS, ids=[f"{c}.{n}" for c, n, _ in CHECKS])
def test_exercise_check_reports_a_crashing_answer(chapter, name, check):
    with pytest.raises(ExerciseError, match="(?i)not yet"):
        check(crash)


#: Answers of the wrong type or shape: each must end in "Not yet: ...", never in a conversion error.
WRONG_ANSWERS = {"a string": "not a number", "a list of strings": ["a", "b"], "a dict": {"x": 1.0},
                 "a tensor of the wrong shape": torch.zeros(7, 7, 7), "a ragged list": [[1.0, 2.0], [3.0]]}


@pytest.mark.parametrize("wrong", WRONG_ANSWERS)
@pytest.mark.parametrize("chapter, name, check", CHECKS, ids=[f"{c}.{n}" for c, n, _ in CHECKS])
def test_exercise_check_reports_a_wrong_answer(chapter, name, check, wrong):
    answer = WRONG_ANSWERS[wrong]
    with pytest.raises(ExerciseError, match="(?i)not yet"):
        check(lambda *args, **kwargs: answer)


# ---- hypothesis: shapes and values for the core algorithms ----------------------------------------------
@settings(max_examples=25, deadline=None)
@given(alpha=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
def test_maml_and_reptile_reject_any_non_positive_or_non_finite_alpha(alpha):
    for cls in (MAML, Reptile):
        with pytest.raises(ValueError, match="alpha"):
            cls(net(), alpha=alpha)


@settings(max_examples=20, deadline=None)
@given(n_tasks=st.integers(1, 4), k=st.integers(1, 6), q=st.integers(1, 6), alpha=st.floats(1e-3, 0.5))
def test_maml_adapts_any_valid_batch_to_finite_predictions(n_tasks, k, q, alpha):
    b = batch(n_tasks, k, q)
    learner = MAML(net(), alpha=alpha, steps=1)
    phi = learner.adapt_batch(b)
    pred = learner.predict_batch(phi, b.x_query)
    assert pred.shape == (n_tasks, q, 1) and torch.isfinite(pred).all()


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 5), bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
       where=st.sampled_from(["x_support", "y_support"]))
def test_maml_rejects_non_finite_support_values(k, bad, where):
    b = batch(1, k, 2)
    x, y = b.x_support.clone(), b.y_support.clone()
    (x if where == "x_support" else y)[0, 0, 0] = bad
    with pytest.raises(ValueError, match="(?i)nan|finite|inf"):
        MAML(net()).adapt(x[0], y[0])


@settings(max_examples=20, deadline=None)
@given(p=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30), seed=st.integers(0, 10))
def test_auc_is_in_unit_interval_or_nan_for_one_class(p, seed):
    """One class only has no AUC: the documented answer is NaN (per-learner tables show it as missing)."""
    y = np.random.default_rng(seed).integers(0, 2, len(p))
    value = metrics.auc(y, p)
    assert math.isnan(value) if len(set(y)) < 2 else 0.0 <= value <= 1.0
