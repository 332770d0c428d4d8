"""Optional benchmark: the MAML paper's sinusoid training in JAX (XLA) vs course_lib, in one run.

Chapter 08, "speed near the limit". The same meta-iteration in these implementations:

* ``jax (jit)``: one ``jax.jit``-compiled step (meta-gradient with one inner step, vmapped over
  tasks, and Adam written out, so the whole update is one XLA program);
* ``jax (jit, lax.scan over N iterations)``: N such steps in one XLA program (``jax.lax.scan``), one
  call per N iterations, N = ``--unroll`` and N = 500 (a whole chunk, like torch's loop below): the
  strongest JAX versions we wrote;
* ``course_lib MAML.fit``: `course_lib.algorithms.MAML` with ``compile=True`` and the chunked
  sampler of `course_lib.experiments.sinusoid` (how chapter 03 trained until chapter 08);
* ``course_lib FusedMAML``: `course_lib.algorithms.fused.FusedMAML`, meta-gradient and Adam in
  one ``torch.compile`` graph, one compiled call per step, with inductor's Python wrapper and with
  its C++ wrapper;
* ``course_lib FusedMAML, unroll=N``: the same with N meta-iterations per compiled call (the loop
  unrolled in the graph);
* ``course_lib FusedMAML, torch.while_loop``: its default `fit`, every chunk of 500 meta-iterations
  in one compiled call, a ``torch.while_loop`` whose body (the step) is compiled once; with torch's
  default threads and with one thread.

Setup: meta-batch 25, K = 10 support and 10 query points, α = 0.01, Adam β = 1e-3, tasks sampled on
the host in chunks of 500 meta-batches (both frameworks). Each compiler's one-time set-up is timed
first in a process of its own (a trivial function compiled: inductor's ISA probes and precompiled
headers on an empty cache, XLA's backend start). Then the rows alternate, ``--rounds`` times, each
run in a fresh process so that no framework's threads compete with another's: it builds the
implementation, warms it up (the first run of a row compiles its graph from a copy of the set-up
cache, timed; later runs load it from there) and trains ``--iterations`` meta-iterations, wall and
process CPU time recorded. JAX keeps no compile cache between runs by default. The 70,000-iteration
estimate is the graph's compile time + 70,000 × the median ms per iteration (a run on a machine where
the compiler has run before); the first-run estimate adds the compiler's set-up. Threads: torch runs
``--torch-threads`` intra-op threads (default: torch's default, one per core; one row always runs one
thread), XLA its defaults unless ``XLA_FLAGS`` is set; the CPU-time column shows what extra threads
cost. The settings, versions and the load average before and after are written to the JSON.

Needs jax (``pip install jax``; CPU is enough); it is not a dependency of the course.
``--cold``: every run, not only a row's first, starts from the set-up cache and compiles its graph.
Run: ``python tools/bench_jax.py [--iterations 3000] [--rounds 3] [--unroll 10] [--cold] [--json FILE]``.
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


def fused_trainer(unroll: int = 1, compile_options: dict | None = None, loop: bool = False, threads: int | None = None):
    """(warm-up, train) for `FusedMAML`; ``compile_options=None``: its defaults (C++ wrapper on CPU).

    ``loop``: its default `fit`, one ``torch.while_loop`` call per chunk; otherwise one compiled call per
    ``unroll`` iterations. ``threads``: torch threads for this row (``None``: the run's setting).
    """
    import torch

    from course_lib.algorithms.fused import FusedMAML
    from course_lib.models.regressor import mlp_regressor
    from course_lib.tasks import sample_sinusoid_tasks

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    learner = FusedMAML(mlp_regressor(), "mse", alpha=ALPHA, steps=1, beta=BETA, unroll=unroll,
                        compile_options=compile_options, loop=loop)
    chunk = lambda g: sample_sinusoid_tasks(CHUNK * META_BATCH, K, K, generator=g)[0]  # noqa: E731

    def fit(n: int) -> float:
        return learner.fit(chunk, n, chunk=CHUNK, progress=False)["loss"][-1]

    return (lambda: fit(max(unroll, 3))), fit  # warm-up: includes one unrolled call, so timed runs never compile


def implementations(unroll: int) -> dict:
    """name -> factory() -> (warm-up, train): every row of the table."""
    impls = {"jax (jit)": jax_trainer}
    if unroll > 1:
        impls[f"jax (jit, lax.scan over {unroll} iterations)"] = lambda: jax_trainer(scan=unroll)
    impls[f"jax (jit, lax.scan over {CHUNK} iterations)"] = lambda: jax_trainer(scan=CHUNK)
    impls |= {"course_lib MAML.fit (compiled)": maml_fit_trainer,
              "course_lib FusedMAML (compiled, Python wrapper, one call per step)":
                  lambda: fused_trainer(1, {"cpp_wrapper": False}),
              "course_lib FusedMAML (compiled, C++ wrapper, one call per step)": lambda: fused_trainer(1)}
    if unroll > 1:
        impls[f"course_lib FusedMAML (compiled, C++ wrapper, unroll={unroll})"] = lambda: fused_trainer(unroll)
    impls |= {f"course_lib FusedMAML (compiled, torch.while_loop over {CHUNK} iterations, 1 torch thread)":
              lambda: fused_trainer(loop=True, threads=1),
              f"course_lib FusedMAML (compiled, torch.while_loop over {CHUNK} iterations; the default)":
              lambda: fused_trainer(loop=True)}
    return impls


def compiler_setup(jax_too: bool = True) -> dict[str, float]:
    """Each compiler's one-time set-up, timed by compiling a trivial function before any row.

    Inductor's first compile builds its ISA probes (kept in its cache) and precompiled headers (kept
    under the temporary folder): once per machine and torch version; the Python wrapper and
    `FusedMAML`'s C++ build are both warmed. XLA's first jit starts its CPU backend. Without this, the first torch row would pay inductor's set-up for all the others.
    Each row's process calls it too, before its own compile: there it finds the on-disk set-up in the
    cache and only starts the compilers in that process. Imports are not timed.
    """
    import torch

    from course_lib.algorithms.fused import inductor_options

    if jax_too:
        import jax
        import jax.numpy as jnp
    t0 = time.perf_counter()
    if jax_too:
        jax.jit(lambda x: (jnp.sin(x) * 2).sum())(jnp.ones(10)).block_until_ready()
    t1 = time.perf_counter()
    for options in ({"cpp_wrapper": False}, inductor_options(torch.device("cpu"))):
        torch.compile(lambda x: (x.sin() * 2).sum(), dynamic=False, options=options)(torch.ones(10))
    return {"jax": t1 - t0, "course_lib": time.perf_counter() - t1}


def run_row(name: str, iterations: int, unroll: int, threads: int) -> dict[str, float]:
    """In this process: build one implementation, warm it up (timed: its compile, or its load from the
    compile cache), then train ``iterations`` meta-iterations; wall and process CPU ms per iteration."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    # The compiler's own start in this process (imports, backend, inductor's lazily loaded passes; the
    # on-disk set-up is in the copied cache) is the set-up column's, not this graph's compile.
    compiler_setup(jax_too=name.startswith("jax"))
    import course_lib.experiments.sinusoid  # noqa: F401
    t0 = time.perf_counter()
    warm, train = implementations(unroll)[name]()
    warm()
    warm_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    train(iterations)
    return {"warm_s": warm_s, "ms": 1e3 * (time.perf_counter() - t0) / iterations,
            "cpu_ms": 1e3 * (time.process_time() - c0) / iterations}  # all threads of the process


def in_child(env: dict, *args: str) -> dict:
    """Run this script with ``args`` in a fresh process; its last output line is a JSON object."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench_jax child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(iterations: int, rounds: int, unroll: int = 1, threads: int = 0, fresh_cache: bool = True,
            only: list[str] | None = None, cold: bool = False) -> tuple[list[dict], dict[str, float]]:
    """Set up the compilers, then run every implementation ``rounds`` times, alternating, each run in
    its own process (so no framework's threads compete with another's); returns rows and set-up times.

    ``fresh_cache``: the set-up runs in a child on a new, empty inductor cache, and each row gets a
    copy of it, so the row's first run compiles its graph from scratch (the compile column) and its
    later runs load it; ``cold``: every run gets a new copy, so every run compiles its graph (the
    compile column is then the median). Otherwise every child uses torch's usual cache. The ms columns
    are medians over all rounds. ``only``: run just the rows whose names contain one of these strings.
    """
    import shutil

    if iterations % CHUNK or CHUNK % unroll:
        raise SystemExit(f"--iterations ({iterations}) must be a multiple of the chunk ({CHUNK}), and the chunk "
                         f"of --unroll ({unroll})")
    names = [n for n in implementations(unroll) if not only or any(o in n for o in only)]
    if not names:
        raise SystemExit(f"--only {only} matches no row; the rows are {list(implementations(unroll))}")
    common = ["--iterations", str(iterations), "--unroll", str(unroll), "--torch-threads", str(threads)]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench_jax_") as root:  # the caches (tens of MB each) go with it
        caches = {name: (str(Path(root) / f"row{i}") if fresh_cache else None) for i, name in enumerate(names)}
        base = str(Path(root) / "setup") if fresh_cache else None
        # Inductor keeps its precompiled headers outside its cache, under the temporary folder: a TMPDIR of
        # the run's own makes the set-up child build them (as on a new machine) and the rows share them.
        tmp = Path(root) / "tmp"
        tmp.mkdir()
        cache_env = lambda d: os.environ | ({"TORCHINDUCTOR_CACHE_DIR": d, "TMPDIR": str(tmp)} if d else {})  # noqa: E731
        setup = in_child(cache_env(base), "--child", "setup", *common)
        for round_ in range(rounds):
            for name in names:
                if caches[name] and (cold or not round_):  # a fresh copy of the set-up: this run compiles its graph
                    shutil.rmtree(caches[name], ignore_errors=True)
                    shutil.copytree(base, caches[name])
                runs[name].append(in_child(cache_env(caches[name]), "--child", name, *common))
                print(f"  {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    rows = []
    for name, r in runs.items():
        ms = statistics.median(x["ms"] for x in r)
        # the first run of the row compiled its graph (with ``cold``, every run did)
        compile_s = statistics.median(x["warm_s"] for x in r) if cold else r[0]["warm_s"]
        estimate = compile_s + 70_000 * ms / 1e3
        rows.append({"implementation": name, "ms_per_iter": ms, "ms_per_iter_rounds": [x["ms"] for x in r],
                     "measured_s_rounds": [x["warm_s"] + iterations * x["ms"] / 1e3 for x in r],
                     "cpu_ms_per_iter": statistics.median(x["cpu_ms"] for x in r), "compile_s": compile_s,
                     "warm_s_rounds": [x["warm_s"] for x in r], "estimate_70k_s": estimate,
                     "first_run_70k_s": estimate + setup["jax" if name.startswith("jax") else "course_lib"]})
    return rows, setup


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=3000, help="meta-iterations per implementation per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unroll", type=int, default=10, help="meta-iterations per compiled call of the unrolled row")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default, the cores)")
    parser.add_argument("--keep-inductor-cache", action="store_true",
                        help="use torch's usual compile cache instead of empty ones (compile times then depend on earlier runs)")
    parser.add_argument("--cold", action="store_true",
                        help="every run starts from the set-up cache, so every run compiles its graph (not only the first)")
    parser.add_argument("--only", default=None,
                        help="comma-separated parts of row names: run only those rows (e.g. 'jax (jit),while_loop')")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one row (or 'setup') in this process
    args = parser.parse_args(argv)
    if args.cold and args.keep_inductor_cache:
        parser.error("--cold copies the set-up cache for every run; it cannot be combined with --keep-inductor-cache")
    if args.child:
        result = compiler_setup() if args.child == "setup" else run_row(args.child, args.iterations, args.unroll,
                                                                          args.torch_threads)
        print(json.dumps(result))
        return []
    try:
        import jax
    except ImportError:
        sys.exit("this optional benchmark needs jax: pip install jax")
    import torch

    settings = {"torch_threads": args.torch_threads or torch.get_num_threads(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "unroll": args.unroll, "chunk": CHUNK, "process_per_run": True,
                "fresh_inductor_cache": not args.keep_inductor_cache, "cold": args.cold, "jax": jax.__version__, "torch": torch.__version__,
                "python": platform.python_version(), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    rows, settings["compiler_setup_s"] = measure(args.iterations, args.rounds, args.unroll, args.torch_threads,
                                                 fresh_cache=not args.keep_inductor_cache,
                                                 only=args.only.split(",") if args.only else None, cold=args.cold)
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
