"""Optional benchmark: the MAML paper's sinusoid training in JAX (XLA) vs course_lib, in one run.

Chapter 08, "speed near the limit". The same meta-iteration in these implementations:

* ``jax (jit)``: one ``jax.jit``-compiled step (meta-gradient with one inner step, vmapped over
  tasks, and Adam written out, so the whole update is one XLA program);
* ``jax (jit, lax.scan over N iterations)``: N such steps in one XLA program (``jax.lax.scan``), one
  call per N iterations: the strongest JAX version we wrote;
* ``course_lib MAML.fit``: `course_lib.algorithms.MAML` with ``compile=True`` and the chunked
  sampler of `course_lib.experiments.sinusoid` (how chapter 03 trained until chapter 08);
* ``course_lib FusedMAML``: `course_lib.algorithms.fused.FusedMAML`, meta-gradient and Adam in
  one ``torch.compile`` graph, with inductor's Python wrapper and with its C++ wrapper (the default);
* ``course_lib FusedMAML, unroll=N``: the same with N meta-iterations per compiled call (the tasks
  of N iterations are sliced from the same host-sampled chunk), so the per-call overhead is paid
  once per N iterations.

Setup: meta-batch 25, K = 10 support and 10 query points, α = 0.01, Adam β = 1e-3, tasks sampled on
the host in chunks of 500 meta-batches (both frameworks), torch on one thread per kernel. Each
compiler's one-time set-up is timed first (a trivial function compiled: inductor's ISA probes and
precompiled headers, XLA's backend start), then each implementation is built and warmed up, which
compiles its own graph (timed; torch starts from an empty inductor cache unless
``--keep-inductor-cache``; JAX keeps no compile cache between runs by default). Then the
implementations alternate, ``--rounds`` times, each round ``--iterations`` meta-iterations, so all rows
see the same machine load; wall and process CPU time are recorded. The 70,000-iteration estimate is
the graph's compile time + 70,000 × the median ms per iteration (a run on a machine where the compiler
has run before); the first-run estimate adds the compiler's set-up. Thread settings matter on a small
CPU: torch runs ``--torch-threads``
intra-op threads (default 1); XLA uses its defaults unless ``XLA_FLAGS`` is set (its CPU time per
iteration shows what its extra threads cost). Both, the versions and the load average before and
after are written to the JSON.

Needs jax (``pip install jax``; CPU is enough); it is not a dependency of the course.
Run: ``python tools/bench_jax.py [--iterations 3000] [--rounds 3] [--unroll 10] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

META_BATCH, K, ALPHA, BETA, CHUNK = 25, 10, 0.01, 1e-3, 500


def sample_numpy(rng: np.random.Generator, n_tasks: int) -> tuple[np.ndarray, ...]:
    """Sinusoid tasks as in course_lib.tasks: A ~ U[0.1, 5], b ~ U[0, π], x ~ U[-5, 5]; [n, K, 1] arrays."""
    amp = rng.uniform(0.1, 5.0, (n_tasks, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, np.pi, (n_tasks, 1, 1)).astype(np.float32)
    xs, xq = (rng.uniform(-5, 5, (n_tasks, K, 1)).astype(np.float32) for _ in range(2))
    return xs, amp * np.sin(xs - phase), xq, amp * np.sin(xq - phase)


def jax_trainer(scan: int = 1):
    """(warm-up function, train(iterations) function) for the JAX implementation.

    ``scan = N > 1``: one jitted call runs N meta-iterations with ``jax.lax.scan`` (XLA's loop, not
    an unrolled graph), the strongest JAX version of the per-call saving that ``unroll`` gives torch.
    """
    import jax
    import jax.numpy as jnp

    def init(key):
        sizes, params = [(1, 40), (40, 40), (40, 1)], []
        for i, (a, b) in enumerate(sizes):
            k1, k2, key = jax.random.split(key, 3)
            bound = 1 / np.sqrt(a)
            params.append((jax.random.uniform(k1, (a, b), minval=-bound, maxval=bound),
                           jax.random.uniform(k2, (b,), minval=-bound, maxval=bound)))
        return params

    def net(p, x):
        for w, b in p[:-1]:
            x = jax.nn.relu(x @ w + b)
        return x @ p[-1][0] + p[-1][1]

    def mse(p, x, y):
        return jnp.mean((net(p, x) - y) ** 2)

    def task_loss(p, xs, ys, xq, yq):
        g = jax.grad(mse)(p, xs, ys)
        return mse(jax.tree.map(lambda a, b: a - ALPHA * b, p, g), xq, yq)

    def meta_loss(p, xs, ys, xq, yq):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(p, xs, ys, xq, yq))

    def step(p, m, v, t, xs, ys, xq, yq):
        loss, g = jax.value_and_grad(meta_loss)(p, xs, ys, xq, yq)
        t = t + 1
        m = jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree.map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        p = jax.tree.map(lambda a, mm, vv: a - BETA * (mm / c1) / (jnp.sqrt(vv / c2) + 1e-8), p, m, v)
        return p, m, v, t, loss

    @jax.jit
    def scanned(p, m, v, t, xs, ys, xq, yq):  # xs [scan, tasks, K, 1]
        def body(carry, batch):
            *carry, loss = step(*carry, *batch)
            return tuple(carry), loss
        (p, m, v, t), losses = jax.lax.scan(body, (p, m, v, t), (xs, ys, xq, yq))
        return p, m, v, t, losses[-1]

    jitted = jax.jit(step)
    state = {"p": init(jax.random.PRNGKey(0))}
    state |= {"m": jax.tree.map(jnp.zeros_like, state["p"]), "v": jax.tree.map(jnp.zeros_like, state["p"]),
              "t": jnp.zeros(()), "rng": np.random.default_rng(0)}

    def train(iterations: int) -> float:
        p, m, v, t = state["p"], state["m"], state["v"], state["t"]
        loss = None
        for start in range(0, iterations, CHUNK):
            xs, ys, xq, yq = (a.reshape(CHUNK, META_BATCH, K, 1) for a in sample_numpy(state["rng"], CHUNK * META_BATCH))
            if scan > 1:
                for i in range(0, min(CHUNK, iterations - start), scan):
                    p, m, v, t, loss = scanned(p, m, v, t, xs[i:i + scan], ys[i:i + scan], xq[i:i + scan], yq[i:i + scan])
            else:
                for i in range(min(CHUNK, iterations - start)):
                    p, m, v, t, loss = jitted(p, m, v, t, xs[i], ys[i], xq[i], yq[i])
        loss.block_until_ready()
        state.update(p=p, m=m, v=v, t=t)
        return float(loss)

    return (lambda: train(max(scan, 3))), train


def maml_fit_trainer():
    """(warm-up, train) for `course_lib.algorithms.MAML.fit` with compile=True and the chunked sampler."""
    import torch

    from course_lib.algorithms import MAML
    from course_lib.experiments.sinusoid import chunked_sampler
    from course_lib.models.regressor import mlp_regressor

    torch.manual_seed(0)
    maml = MAML(mlp_regressor(), "mse", alpha=ALPHA, steps=1)
    sample = chunked_sampler(META_BATCH, K, K, torch.device("cpu"), chunk=CHUNK)
    opt = torch.optim.Adam(maml.parameters(), lr=BETA, fused=True)

    def fit(n: int) -> float:
        return maml.fit(sample, n, compile=True, progress=False, optimizer=opt)["loss"][-1]

    return (lambda: fit(3)), fit


def fused_trainer(unroll: int = 1, compile_options: dict | None = None):
    """(warm-up, train) for `FusedMAML`; ``compile_options=None``: its defaults (C++ wrapper on CPU)."""
    import torch

    from course_lib.algorithms.fused import FusedMAML
    from course_lib.models.regressor import mlp_regressor
    from course_lib.tasks import sample_sinusoid_tasks

    torch.manual_seed(0)
    learner = FusedMAML(mlp_regressor(), "mse", alpha=ALPHA, steps=1, beta=BETA, unroll=unroll,
                        compile_options=compile_options)
    chunk = lambda g: sample_sinusoid_tasks(CHUNK * META_BATCH, K, K, generator=g)[0]  # noqa: E731

    def fit(n: int) -> float:
        return learner.fit(chunk, n, chunk=CHUNK, progress=False)["loss"][-1]

    return (lambda: fit(max(unroll, 3))), fit  # warm-up: includes one unrolled call, so timed runs never compile


def implementations(unroll: int) -> dict:
    """name -> factory() -> (warm-up, train): every row of the table."""
    impls = {"jax (jit)": jax_trainer}
    if unroll > 1:
        impls[f"jax (jit, lax.scan over {unroll} iterations)"] = lambda: jax_trainer(scan=unroll)
    impls |= {"course_lib MAML.fit (compiled)": maml_fit_trainer,
              "course_lib FusedMAML (compiled, Python wrapper)": lambda: fused_trainer(1, {"cpp_wrapper": False}),
              "course_lib FusedMAML (compiled, C++ wrapper)": lambda: fused_trainer(1)}
    if unroll > 1:
        impls[f"course_lib FusedMAML (compiled, C++ wrapper, unroll={unroll})"] = lambda: fused_trainer(unroll)
    return impls


def compiler_setup() -> dict[str, float]:
    """Each compiler's one-time set-up, timed by compiling a trivial function before any row.

    Inductor's first compile on an empty cache builds its ISA probes and precompiled headers (kept in
    the cache: once per machine and torch version; both wrappers are warmed); XLA's first jit starts
    its CPU backend. Without this, the first torch row would pay inductor's set-up for all the others.
    """
    import jax
    import jax.numpy as jnp
    import torch

    t0 = time.perf_counter()
    jax.jit(lambda x: (jnp.sin(x) * 2).sum())(jnp.ones(10)).block_until_ready()
    t1 = time.perf_counter()
    for options in ({"cpp_wrapper": False}, {"cpp_wrapper": True}):
        torch.compile(lambda x: (x.sin() * 2).sum(), dynamic=False, options=options)(torch.ones(10))
    return {"jax": t1 - t0, "course_lib": time.perf_counter() - t1}


def measure(iterations: int, rounds: int, unroll: int = 1, threads: int = 1) -> tuple[list[dict], dict[str, float]]:
    """Set up the compilers, build and compile every implementation (timed), then alternate ``rounds`` timed
    runs of each; returns the rows and the set-up times."""
    import torch

    if iterations % unroll or CHUNK % unroll:
        raise SystemExit(f"--iterations ({iterations}) and the chunk ({CHUNK}) must be multiples of "
                         f"--unroll ({unroll})")
    torch.set_num_threads(threads)
    setup = compiler_setup()
    trainers, compile_s, runs, cpu = {}, {}, {}, {}
    for name, factory in implementations(unroll).items():
        t0 = time.perf_counter()
        warm, trainers[name] = factory()
        warm()
        compile_s[name], runs[name], cpu[name] = time.perf_counter() - t0, [], []
    for _ in range(rounds):
        for name, train in trainers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            train(iterations)
            runs[name].append(1e3 * (time.perf_counter() - t0) / iterations)
            cpu[name].append(1e3 * (time.process_time() - c0) / iterations)  # all threads of the process
    rows = []
    for name in trainers:
        ms = statistics.median(runs[name])
        estimate = compile_s[name] + 70_000 * ms / 1e3
        rows.append({"implementation": name, "ms_per_iter": ms, "ms_per_iter_rounds": runs[name],
                     "cpu_ms_per_iter": statistics.median(cpu[name]), "compile_s": compile_s[name],
                     "estimate_70k_s": estimate,
                     "first_run_70k_s": estimate + setup["jax" if name.startswith("jax") else "course_lib"]})
    return rows, setup


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=3000, help="meta-iterations per implementation per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unroll", type=int, default=10, help="meta-iterations per compiled call of the unrolled row")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--keep-inductor-cache", action="store_true",
                        help="use torch's usual compile cache instead of an empty one (first compile times then depend on earlier runs)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not args.keep_inductor_cache:  # a first run's compile times: nothing cached from earlier runs
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_jax_inductor_")
    try:
        import jax
    except ImportError:
        sys.exit("this optional benchmark needs jax: pip install jax")
    import torch

    settings = {"torch_threads": args.torch_threads, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "unroll": args.unroll, "fresh_inductor_cache": not args.keep_inductor_cache, "jax": jax.__version__, "torch": torch.__version__,
                "python": platform.python_version(), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    rows, settings["compiler_setup_s"] = measure(args.iterations, args.rounds, args.unroll, args.torch_threads)
    settings["load_after"] = os.getloadavg()
    print(f"one-time compiler set-up: {settings['compiler_setup_s']}")
    for r in rows:
        print(f"{r['implementation']:60s} {r['ms_per_iter']:7.3f} ms/iteration  compile {r['compile_s']:5.1f} s "
              f"70k estimate {r['estimate_70k_s']:6.1f} s (first run {r['first_run_70k_s']:6.1f} s)  CPU {r['cpu_ms_per_iter']:6.3f} ms  rounds {[round(v, 3) for v in r['ms_per_iter_rounds']]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"iterations": args.iterations, "rounds": args.rounds,
                                               "settings": settings, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
