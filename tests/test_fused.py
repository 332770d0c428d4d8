"""FusedMAML = MAML + torch.optim.Adam (property: the same trajectory), eager and compiled."""

from __future__ import annotations

import warnings

import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.algorithms.fused import FusedMAML, adam_update
from course_lib.models.regressor import mlp_regressor
from course_lib.tasks import sample_sinusoid_tasks


def test_adam_update_equals_torch_adam():
    g = torch.Generator().manual_seed(0)
    theta = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)}
    p = {k: torch.nn.Parameter(v.clone()) for k, v in theta.items()}
    opt = torch.optim.Adam(p.values(), lr=0.01)
    m = {k: torch.zeros_like(v) for k, v in theta.items()}
    v = {k: torch.zeros_like(x) for k, x in theta.items()}
    for t in range(1, 6):
        grads = {k: torch.randn(x.shape, generator=g) for k, x in theta.items()}
        theta, m, v = adam_update(theta, grads, m, v, torch.tensor(float(t)), 0.01)
        for k in p:
            p[k].grad = grads[k]
        opt.step()
    for k in p:
        torch.testing.assert_close(theta[k], p[k].detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("first_order", [False, True])
def test_fused_training_follows_maml_with_adam(first_order):
    batches = [sample_sinusoid_tasks(6, 5, generator=torch.Generator().manual_seed(s))[0] for s in range(8)]
    torch.manual_seed(0)
    ref_model = mlp_regressor()
    torch.manual_seed(0)
    fused = FusedMAML(mlp_regressor(), alpha=0.01, steps=1, first_order=first_order, beta=1e-2, compile=False)
    ref = MAML(ref_model, alpha=0.01, steps=1, first_order=first_order)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for b in batches:
        ref_loss = ref.step(b, opt)
        loss = fused.step(b.x_support, b.y_support, b.x_query, b.y_query)
        torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    fused.sync()
    for (k, a), (_, b) in zip(fused.model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=k)
    assert max((a - b).abs().max() for a, b in zip(fused.theta.values(), mlp_regressor().parameters())) > 1e-3


def test_fit_history_and_validation():
    fused = FusedMAML(mlp_regressor(), compile=False)
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731 - 3 iterations of 4 tasks
    history = fused.fit(sample, iterations=7, chunk=3, progress=False, log_every=5)
    assert history["iteration"] == [5, 7] and all(h > 0 for h in history["loss"])
    assert fused.t.item() == 7
    with pytest.raises(ValueError, match="alpha > 0"):
        FusedMAML(mlp_regressor(), alpha=0)


def test_fit_history_is_the_mean_of_each_window():
    """Windows of 5 across chunks of 3 (and a last, short window): the means of the single steps' losses."""
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731 - 3 iterations of 4 tasks
    torch.manual_seed(0)
    fused = FusedMAML(mlp_regressor(), compile=False)
    history = fused.fit(sample, iterations=8, chunk=3, progress=False, log_every=5)
    torch.manual_seed(0)
    single, g, losses = FusedMAML(mlp_regressor(), compile=False), torch.Generator().manual_seed(0), []
    for _ in range(3):
        b = sample(g)
        for i in range(3):
            s = slice(4 * i, 4 * i + 4)
            losses.append(single.step(b.x_support[s], b.y_support[s], b.x_query[s], b.y_query[s]))
    losses = torch.stack(losses[:8])
    assert history["iteration"] == [5, 8]
    assert history["loss"] == pytest.approx([losses[:5].mean().item(), losses[5:].mean().item()], rel=1e-6)
    assert FusedMAML._log_points(0, 3, 8, 5) == [] and FusedMAML._log_points(3, 3, 8, 5) == [5]
    assert FusedMAML._log_points(6, 2, 8, 5) == [8] and FusedMAML._log_points(5, 5, 10, 5) == [10]


def test_fit_refuses_changing_shapes():
    fused = FusedMAML(mlp_regressor(), compile=False)
    calls = iter([8, 12])
    sample = lambda g: sample_sinusoid_tasks(4 * 2, next(calls), generator=g)[0]  # noqa: E731 - K changes
    with pytest.raises(ValueError, match="same shapes"):
        fused.fit(sample, iterations=4, chunk=2, progress=False)


@pytest.mark.parametrize("options", [None, {"cpp_wrapper": False}], ids=["cpp-wrapper", "python-wrapper"])
def test_compiled_fit_matches_eager(options):
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731
    torch.manual_seed(0)
    eager = FusedMAML(mlp_regressor(), compile=False)
    eager.fit(sample, iterations=6, chunk=3, progress=False)
    torch.manual_seed(0)
    compiled = FusedMAML(mlp_regressor(), compile=True, compile_options=options)
    compiled.fit(sample, iterations=6, chunk=3, progress=False)  # guards skipped after the first step
    for k, v in eager.theta.items():
        torch.testing.assert_close(compiled.theta[k], v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("compile", [False, True])
def test_unrolled_steps_equal_single_steps(compile):
    """unroll=N: one call runs N meta-iterations with the arithmetic of N single steps."""
    b = sample_sinusoid_tasks(4 * 3, 5, generator=torch.Generator().manual_seed(1))[0]
    xs, ys, xq, yq = (t.reshape(3, 4, *t.shape[1:]) for t in (b.x_support, b.y_support, b.x_query, b.y_query))
    torch.manual_seed(0)
    single = FusedMAML(mlp_regressor(), beta=1e-2, compile=False)
    torch.manual_seed(0)
    unrolled = FusedMAML(mlp_regressor(), beta=1e-2, compile=compile, unroll=3, loop=False)
    ref = torch.stack([single.step(xs[i], ys[i], xq[i], yq[i]) for i in range(3)])
    losses = unrolled.steps(xs, ys, xq, yq)
    assert losses.shape == (3,) and unrolled.t.item() == 3
    torch.testing.assert_close(losses, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unrolled.state, single.state, atol=1e-6, rtol=1e-5)
    unrolled.steps(xs[:2], ys[:2], xq[:2], yq[:2])  # n != unroll: single steps
    assert unrolled.t.item() == 5



def assert_same_training(one: FusedMAML, h1: dict, two: FusedMAML, h2: dict, logged: list[int]) -> None:
    """Two learners fitted on the same tasks: the same logged iterations and window losses, and the same θ."""
    assert h2["iteration"] == h1["iteration"] == logged and two.t.item() == one.t.item() == logged[-1]
    assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-5)
    for k, v in one.theta.items():
        torch.testing.assert_close(two.theta[k], v, atol=1e-5, rtol=1e-4)

@pytest.mark.parametrize("compile", [False, True])
def test_unrolled_fit_equals_single_step_fit(compile):
    """7 iterations in chunks of 4 with unroll=2: blocks of 2, and a last single step, same θ as unroll=1."""
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731 - 4 iterations of 3 tasks
    torch.manual_seed(0)
    one = FusedMAML(mlp_regressor(), compile=False)
    h1 = one.fit(sample, iterations=7, chunk=4, progress=False, log_every=3)
    torch.manual_seed(0)
    two = FusedMAML(mlp_regressor(), compile=compile, unroll=2, loop=False)
    h2 = two.fit(sample, iterations=7, chunk=4, progress=False, log_every=3)
    assert_same_training(one, h1, two, h2, [3, 6, 7])


def test_unroll_is_validated():
    with pytest.raises(ValueError, match="unroll"):
        FusedMAML(mlp_regressor(), unroll=0)
    fused = FusedMAML(mlp_regressor(), compile=False, unroll=4, loop=False)
    with pytest.raises(ValueError, match="multiple of unroll"):
        fused.fit(lambda g: sample_sinusoid_tasks(6, 5, generator=g)[0], iterations=6, chunk=6, progress=False)
    with pytest.raises(ValueError, match="same n"):
        b = sample_sinusoid_tasks(8, 5)[0]
        fused.steps(b.x_support.reshape(4, 2, 5, 1), b.y_support.reshape(2, 4, 5, 1), b.x_query, b.y_query)


@pytest.mark.parametrize("compile", [False, True])
def test_loop_equals_single_steps_and_reuses_its_compiled_code(compile):
    """loop: one call runs n meta-iterations (a torch.while_loop) with the arithmetic of n single steps; a
    shorter last chunk of fit runs in the same compiled code (the loop's bounds are tensors)."""
    b = sample_sinusoid_tasks(4 * 3, 5, generator=torch.Generator().manual_seed(1))[0]
    xs, ys, xq, yq = (t.reshape(3, 4, *t.shape[1:]) for t in (b.x_support, b.y_support, b.x_query, b.y_query))
    torch.manual_seed(0)
    single = FusedMAML(mlp_regressor(), beta=1e-2, compile=False, loop=False)
    torch.manual_seed(0)
    looped = FusedMAML(mlp_regressor(), beta=1e-2, compile=compile)
    ref = torch.stack([single.step(xs[i], ys[i], xq[i], yq[i]) for i in range(3)])
    losses = looped.steps(xs, ys, xq, yq)  # support and query share memory here: the loop copies them
    assert losses.shape == (3,) and looped.t.item() == 3
    torch.testing.assert_close(losses, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(looped.state, single.state, atol=1e-6, rtol=1e-5)

    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731 - 3 iterations of 4 tasks
    torch.manual_seed(0)
    one = FusedMAML(mlp_regressor(), compile=False, loop=False)
    h1 = one.fit(sample, iterations=7, chunk=3, progress=False, log_every=2)
    torch.manual_seed(0)
    two = FusedMAML(mlp_regressor(), compile=compile)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=compile), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a recompile would fall back to eager with a warning
        h2 = two.fit(sample, iterations=7, chunk=3, progress=False, log_every=2)  # last chunk: 1 of 3
    assert_same_training(one, h1, two, h2, [2, 4, 6, 7])


def test_loop_and_unroll_are_exclusive():
    with pytest.raises(ValueError, match="loop=False"):
        FusedMAML(mlp_regressor(), unroll=2)


def test_inductor_options_on_the_cpu_unless_told_otherwise():
    from torch._inductor import config

    from course_lib.algorithms.fused import (COMPILE_OPTIONS, CPU_BUILD_OPTIONS, CPU_GRAPH_OPTIONS, LOOP_CACHE_OPTIONS,
                                             inductor_options)

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    supported = lambda options: {k: v for k, v in options.items() if hasattr(config, k)}  # noqa: E731
    graph, build, cache = supported(CPU_GRAPH_OPTIONS), supported(CPU_BUILD_OPTIONS), supported(LOOP_CACHE_OPTIONS)
    assert inductor_options(cpu) == COMPILE_OPTIONS | cache | graph | build
    assert inductor_options(cuda) == COMPILE_OPTIONS | cache  # GPU wrappers are built at -O1 already; rewrites kept
    # The Python wrapper: nothing to split, the graph options still apply.
    assert inductor_options(cpu, {"cpp_wrapper": False}) == {"cpp_wrapper": False} | cache | graph
    assert inductor_options(cpu, {"cpp_wrapper_build_separate": False})["cpp_wrapper_build_separate"] is False
    assert inductor_options(cpu, {"pattern_matcher": True})["pattern_matcher"] is True


def test_parallel_cpp_builds_restores_torch_and_nests():
    import os

    from torch._inductor import codecache

    from course_lib.algorithms.fused import parallel_cpp_builds

    serial = codecache._worker_compile_cpp
    with parallel_cpp_builds():
        inside = codecache._worker_compile_cpp
        assert (inside is not serial) == ((os.cpu_count() or 1) >= 2)  # one core: nothing to gain, no swap
        with parallel_cpp_builds():  # nested: no second swap
            assert codecache._worker_compile_cpp is inside
        assert codecache._worker_compile_cpp is inside
    assert codecache._worker_compile_cpp is serial
    with pytest.raises(RuntimeError, match="boom"), parallel_cpp_builds():
        raise RuntimeError("boom")
    assert codecache._worker_compile_cpp is serial  # restored after an error too


_LOOP_IN_A_NEW_PROCESS = """
import json, sys, time, torch
from torch._dynamo.utils import counters
from torch._inductor.cpp_builder import CppBuilder
builds, build = [], CppBuilder.build
def timed(self):  # when each C++ file was built: the wrapper and the kernels must overlap
    start = time.perf_counter()
    build(self)
    builds.append([self.get_target_file_path(), start, time.perf_counter()])
CppBuilder.build = timed
from course_lib.algorithms.fused import FusedMAML
from course_lib.models.regressor import mlp_regressor
from course_lib.tasks import sample_sinusoid_tasks
torch.set_num_threads(1)
torch.manual_seed(0)
learner = FusedMAML(mlp_regressor(), "mse", alpha=0.01, beta=1e-3, first_order=sys.argv[1] == "first")
history = learner.fit(lambda g: sample_sinusoid_tasks(4 * 5, 5, 5, generator=g)[0], 8, chunk=4, progress=False,
                      log_every=1)
print(json.dumps({"losses": history["loss"], "hits": counters["inductor"]["fxgraph_cache_hit"], "builds": builds}))
"""


def test_the_compiled_loop_is_cached_for_the_next_process(tmp_path):
    """torch 2.14 does not cache graphs with `while_loop` unless told to (`LOOP_CACHE_OPTIONS`): the second
    process must load the loop from the cache with the same losses, and a loop with another body must not.
    The first process's compile builds its two C++ files side by side (`parallel_cpp_builds`)."""
    import json
    import os
    import subprocess
    import sys

    from torch._inductor import config

    if not hasattr(config, "unsafe_marked_cacheable_functions"):
        pytest.skip("this torch has no unsafe_marked_cacheable_functions")
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "OMP_NUM_THREADS": "1"}

    def run(order: str) -> dict:
        out = subprocess.run([sys.executable, "-c", _LOOP_IN_A_NEW_PROCESS, order], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second, other_body = run("second"), run("second"), run("first")
    assert first["hits"] == 0 and second["hits"] >= 1, (first, second)
    # The first process compiled the loop: its wrapper (main) and kernels (optimized) were built side by side.
    main, kernels = ([b for b in first["builds"] if b[0].endswith(f".{part}.o")] for part in ("main", "optimized"))
    assert len(main) == len(kernels) == 1, first["builds"]
    if (os.cpu_count() or 1) >= 2:
        assert main[0][1] < kernels[0][2] and kernels[0][1] < main[0][2], first["builds"]  # the intervals overlap
    assert second["losses"] == first["losses"]
    assert other_body["hits"] == 0 and other_body["losses"] != first["losses"]
