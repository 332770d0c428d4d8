"""The whole MAML meta-iteration, meta-gradient AND Adam step, as one compiled graph.

Derived in chapter 08 (Scaling meta-training), section 1 ("speed near the limit"). The profile of a
compiled `MAML.fit` iteration on a small network shows that the compiled meta-gradient is only part
of the time: the rest is the optimiser step outside the graph (one dispatch per parameter and
moment), building a `TaskBatch` and its masks for every iteration, and the Python between them.
`FusedMAML` removes all three:

* the meta-gradient (`maml_loss`, vmapped over tasks) and the Adam update are one function of
  ``(θ, m, v, t, batch tensors)``, compiled once by ``torch.compile``;
* the Adam update is written out (the same arithmetic as ``torch.optim.Adam``, checked in
  tests/test_fused.py), so it is inside the graph and fused with the rest;
* tasks come as pre-drawn tensors ``[iterations, tasks, k_shot, features]`` sliced per iteration;
* `fit` runs all the meta-iterations of a chunk in one compiled call: a ``torch.while_loop`` whose
  body is the step, so inductor compiles the step once and loops over it in C++; the per-call cost
  (Python, the call into the compiled code, its output handling) is paid once per chunk, and the
  loop's bounds are tensors, so a shorter last chunk reuses the same compiled code;
* ``unroll=N`` (with ``loop=False``) is the older way to the same saving: the loop is unrolled when
  the graph is traced, so the graph, and its compile time, are N times longer. The arithmetic of
  both is that of single steps (tests/test_fused.py).

θ and Adam's moments live in one flat tensor ``state [3, parameters]`` (few inputs, so the compiled
function's guards are cheap: with one input per parameter tensor they took about a sixth of the
step in the chapter 08 profile); `FusedMAML.sync` writes θ back into the model.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

from course_lib.algorithms.functional import LossFn, Params, get_loss, maybe_compile
from course_lib.algorithms.maml import inner_rates, maml_loss_tensors  # raw tensors: a TaskBatch's NaN checks would break the graph
from course_lib.tasks import TaskBatch

__all__ = ["COMPILE_OPTIONS", "CPU_BUILD_OPTIONS", "CPU_GRAPH_OPTIONS", "FusedMAML", "LOOP_CACHE_OPTIONS", "adam_update",
           "inductor_options", "parallel_cpp_builds"]

# Inductor's wrapper around the generated kernels in C++ instead of Python: the step is a few dozen
# small kernels, and calling each from Python cost about a tenth of an iteration (chapter 08).
COMPILE_OPTIONS = {"cpp_wrapper": True}
# On the CPU the C++ wrapper and the kernels are compiled as two files: the wrapper (tensor bookkeeping
# and calls, most of the C++ and 3.5 s of g++ at -O3 in the chapter 08 profile) at inductor's -O1 for
# wrappers, the kernels at -O3 as before. The same kernels; about 2 s less compile per graph (chapter 08).
CPU_BUILD_OPTIONS = {"cpp_wrapper_build_separate": True}
# On the CPU, without inductor's pattern rewrites: with them, each task's inner-loop update of the
# 40 × 40 weight is laid out transposed, and the batched products that read it are slower (1 thread:
# 50 against 32 µs per product, averaged over the six of an iteration). Without them a meta-iteration
# of the sinusoid loop takes 15 % less (1 thread: 0.44 against 0.52 ms), the losses agree to rounding
# and the compile takes as long (chapter 08; measurements in the README).
CPU_GRAPH_OPTIONS = {"pattern_matcher": False}
# Let inductor's and AOTAutograd's caches keep the loop's graph. torch 2.14 skips every graph that
# contains `while_loop` (the operator is not marked cacheable), so each new process compiled the loop
# again (9-11 s); with it cached, a new process loads it in a few seconds. The loop's condition and
# body are subgraphs of the cached graph and part of its key, as for the operators torch does mark
# cacheable (flex_attention, invoke_subgraph); a test checks that a second process loads the graph
# with the same losses and that a loop with another body (first order) is compiled anew. Keyed by
# the torch version (chapter 08).
LOOP_CACHE_OPTIONS = {"unsafe_marked_cacheable_functions": {"torch.ops.higher_order.while_loop": torch.__version__}}


def inductor_options(device: torch.device, user: dict | None = None) -> dict:
    """`COMPILE_OPTIONS` and `LOOP_CACHE_OPTIONS`; on the CPU `CPU_GRAPH_OPTIONS`, and `CPU_BUILD_OPTIONS`
    with the C++ wrapper (each where this torch has it); then the caller's ``user`` options, which win."""
    from torch._inductor import config

    options = dict(COMPILE_OPTIONS)
    with_cpp_wrapper = (user or {}).get("cpp_wrapper", options["cpp_wrapper"])
    extra = LOOP_CACHE_OPTIONS.copy()
    if device.type == "cpu":
        extra |= CPU_GRAPH_OPTIONS | (CPU_BUILD_OPTIONS if with_cpp_wrapper else {})
    options |= {k: v for k, v in extra.items() if hasattr(config, k)}
    return options | (user or {})


@contextmanager
def parallel_cpp_builds() -> Iterator[None]:
    """Inside, inductor builds a graph's two C++ files (`CPU_BUILD_OPTIONS`) side by side, then links them.

    torch 2.14 compiles the wrapper (``-O1``) and the kernels (``-O3``) one after the other, then links,
    all in ``torch._inductor.codecache._worker_compile_cpp``; this swaps in a version that runs the two
    g++ processes at once (same files, same flags, same lock) and restores torch's on exit. On the
    2-core course machine: 1.2-1.6 s less of a 9.6 s compile of the sinusoid loop (chapter 08; README).
    A no-op with one core, where this torch lacks that function, or when already inside.
    """
    from torch._inductor import codecache

    serial = getattr(codecache, "_worker_compile_cpp", None)
    if serial is None or getattr(serial, "side_by_side", False) or (os.cpu_count() or 1) < 2:
        yield
        return

    def side_by_side(lock_path: str, builders) -> None:
        if len(builders) != 3:  # not (wrapper, kernels, linker): as torch does it
            return serial(lock_path, builders)
        from concurrent.futures import ThreadPoolExecutor

        from torch.utils._filelock import FileLock

        *objects, linker = builders
        with FileLock(lock_path, timeout=codecache.LOCK_TIMEOUT):
            with ThreadPoolExecutor(len(objects)) as pool:  # g++ runs in subprocesses: threads suffice
                builds = [pool.submit(b.build) for b in objects if not os.path.exists(b.get_target_file_path())]
                for done in builds:
                    done.result()  # a compile error surfaces here, as torch's own
            if not os.path.exists(linker.get_target_file_path()):
                linker.build()

    side_by_side.side_by_side = True  # type: ignore[attr-defined]
    codecache._worker_compile_cpp = side_by_side
    try:
        yield
    finally:
        codecache._worker_compile_cpp = serial


def _building_side_by_side(fn: Callable) -> Callable:
    """``fn`` whose first call, the one that compiles, runs inside `parallel_cpp_builds`; later calls go straight
    to ``fn`` (entering the context costs about 30 µs, 6 % of a one-step call). `FusedMAML`'s calls keep
    their shapes, so the first is the only one that compiles; one that did not would build serially, as torch does."""
    compiled = False

    @functools.wraps(fn)
    def call(*args: Tensor):
        nonlocal compiled
        if compiled:
            return fn(*args)
        with parallel_cpp_builds():
            out = fn(*args)
        compiled = True
        return out
    return call


def adam_update(theta: Params, grads: Params, m: Params, v: Params, t: Tensor, beta: float,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> tuple[Params, Params, Params]:
    """One Adam step (Kingma & Ba 2015, as ``torch.optim.Adam``): returns (θ', m', v'); ``t`` is the new step count."""
    b1, b2 = betas
    m = {k: b1 * m[k] + (1 - b1) * grads[k] for k in grads}
    v = {k: b2 * v[k] + (1 - b2) * grads[k] * grads[k] for k in grads}
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    theta = {k: theta[k] - beta * (m[k] / c1) / ((v[k] / c2).sqrt() + eps) for k in grads}
    return theta, m, v


class FusedMAML:
    """MAML / FOMAML meta-training with the meta-gradient and Adam fused into one compiled step.

    The same algorithm as ``MAML(model, loss, alpha, steps, first_order).fit(..., beta)`` with
    Adam; it trains faster for small networks, where per-operator overhead dominates. ``loop`` (the
    default): `fit` and :meth:`steps` run many meta-iterations per compiled call in a ``torch.while_loop``.
    ``unroll`` (needs ``loop=False``): meta-iterations per compiled call, unrolled in the graph;
    compilation takes about ``unroll`` times longer.
    ``compile_options``: inductor options on top of `inductor_options` (``{"cpp_wrapper": False}``: the
    Python wrapper).
    """

    def __init__(self, model: nn.Module, loss: str | LossFn = "mse", alpha: float = 0.01, steps: int = 1,
                 first_order: bool = False, beta: float = 1e-3, compile: bool = True, unroll: int = 1,
                 compile_options: dict | None = None, loop: bool = True) -> None:
        if alpha <= 0 or beta <= 0 or steps < 0:
            raise ValueError(f"need alpha > 0, beta > 0, steps >= 0; got {alpha}, {beta}, {steps}")
        if not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"unroll (meta-iterations per compiled call) must be an int >= 1, got {unroll!r}")
        if loop and unroll > 1:
            raise ValueError(f"unroll={unroll} and loop=True are two ways to run several meta-iterations per "
                             "compiled call; pass loop=False to unroll")
        self.model, self.unroll, self.loop = model, unroll, loop
        theta = {k: p.detach() for k, p in model.named_parameters()}
        self._names = list(theta)
        self._shapes = [v.shape for v in theta.values()]
        self._sizes = [v.numel() for v in theta.values()]
        flat = torch.cat([v.reshape(-1) for v in theta.values()])
        # θ, m, v as the rows of one tensor: 2 state inputs instead of 3 × (number of parameters), so the
        # compiled function's guards (checked on every call) stay cheap.
        self.state = torch.stack([flat, torch.zeros_like(flat), torch.zeros_like(flat)])
        self.t = torch.zeros((), device=flat.device)
        loss_fn = get_loss(loss)
        rates = inner_rates(alpha, theta)

        def step(state: Tensor, t: Tensor, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor):
            theta, m, v = (self._unflatten(row) for row in state.unbind(0))

            def objective(th: Params) -> Tensor:  # = maml_loss(model, th, TaskBatch(xs, ys, xq, yq), ...)
                return maml_loss_tensors(model, th, rates, xs, ys, None, xq, yq, None,  # no masks: no padding here
                                         loss_fn=loss_fn, steps=steps, first_order=first_order, adapt=None)
            grads, value = torch.func.grad_and_value(objective)(theta)
            t = t + 1
            theta, m, v = adam_update(theta, grads, m, v, t, beta)
            return torch.stack([self._flatten(theta), self._flatten(m), self._flatten(v)]), t, value

        def unrolled(state: Tensor, t: Tensor, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor):
            losses = []
            for i in range(xs.shape[0]):  # a Python loop: traced into one graph of N iterations
                state, t, loss = step(state, t, xs[i], ys[i], xq[i], yq[i])
                losses.append(loss)
            return state, t, torch.stack(losses)

        def looped(state: Tensor, t: Tensor, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor, stop: Tensor):
            """Meta-iterations ``0 … stop-1`` of a chunk ``[chunk, tasks, ...]``; their losses in a ``[chunk]`` tensor."""
            def more(i: Tensor, state: Tensor, t: Tensor, losses: Tensor) -> Tensor:
                return i < stop

            def one(i: Tensor, state: Tensor, t: Tensor, losses: Tensor):
                at = i.view(1)
                state, t, loss = step(state, t, *(a.index_select(0, at).squeeze(0) for a in (xs, ys, xq, yq)))
                return i + 1, state, t, losses.index_copy(0, at, loss.view(1))

            i = torch.zeros((), dtype=torch.long, device=xs.device)
            _, state, t, losses = torch.while_loop(more, one, (i, state, t, state.new_zeros(xs.shape[0])))
            return state, t, losses

        options = inductor_options(flat.device, compile_options)
        side_by_side = compile and options.get("cpp_wrapper_build_separate", False)
        wrap = _building_side_by_side if side_by_side else (lambda fn: fn)
        self._step: Callable = wrap(maybe_compile(step, compile, options))
        self._unrolled: Callable = wrap(maybe_compile(unrolled, compile, options))
        self._looped: Callable = wrap(maybe_compile(looped, compile, options))

    def _unflatten(self, row: Tensor) -> Params:
        return {k: c.view(s) for k, c, s in zip(self._names, row.split(self._sizes), self._shapes)}

    def _flatten(self, params: Params) -> Tensor:
        return torch.cat([params[k].reshape(-1) for k in self._names])

    def step(self, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        """One meta-iteration on tasks ``[tasks, k_shot, features]``; returns the meta-loss before it."""
        self.state, self.t, loss = self._step(self.state, self.t, xs, ys, xq, yq)
        return loss

    def steps(self, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        """``n`` meta-iterations on tasks ``[n, tasks, k_shot, features]``; returns the ``[n]`` meta-losses.

        ``loop``: one call of the compiled loop. Otherwise ``n == unroll``: one call of the unrolled
        compiled graph; any other ``n``: ``n`` single steps (so the unrolled graph is compiled for one
        shape only). All give the same θ.
        """
        if xs.dim() < 3 or not xs.shape[0] == ys.shape[0] == xq.shape[0] == yq.shape[0]:
            raise ValueError(f"steps expects tensors [n, tasks, k_shot, ...] with the same n; got {tuple(xs.shape)}, "
                             f"{tuple(ys.shape)}, {tuple(xq.shape)}, {tuple(yq.shape)}")
        if self.loop:
            return self._run_loop([xs, ys, xq, yq], xs.shape[0])
        if xs.shape[0] != self.unroll:
            return torch.stack([self.step(*b) for b in zip(xs, ys, xq, yq)])
        self.state, self.t, losses = self._unrolled(self.state, self.t, xs, ys, xq, yq)
        return losses

    def _run_loop(self, tensors: list[Tensor], todo: int) -> Tensor:
        """The first ``todo`` meta-iterations of ``[n, tasks, ...]`` tensors in one compiled loop; their losses."""
        # Own copies: the loop operator refuses inputs that share memory (support and query are often
        # views of one sampled tensor), and the copy is a few kB per iteration.
        tensors = [t.clone(memory_format=torch.contiguous_format) for t in tensors]
        stop = torch.tensor(todo, device=self.state.device)  # a tensor: no recompilation for another todo
        self.state, self.t, losses = self._looped(self.state, self.t, *tensors, stop)
        return losses[:todo]

    def fit(self, sample_chunk: Callable[[torch.Generator], TaskBatch], iterations: int, chunk: int,
            seed: int = 0, progress: bool = True, log_every: int = 100) -> dict:
        """Meta-train for ``iterations`` steps; ``sample_chunk(g)`` draws ``chunk × tasks`` tasks at once.

        Returns the loss history (mean per ``log_every`` window), as `fit_loop` does. After the first
        (compiling) step the compiled step runs without its guard checks, so ``sample_chunk`` must
        return tensors of the same shapes every time (checked per chunk). ``loop``: one compiled call
        per chunk. Otherwise ``chunk`` must be a multiple of ``unroll``; a last block shorter than
        ``unroll`` runs as single steps.
        """
        if chunk < 1 or chunk % self.unroll:
            raise ValueError(f"chunk ({chunk}) must be a positive multiple of unroll ({self.unroll})")
        from tqdm.auto import tqdm

        g = torch.Generator().manual_seed(seed)
        history: dict[str, list] = {"iteration": [], "loss": []}
        window: list[Tensor] = []
        self._trusting = False
        with tqdm(total=iterations, disable=not progress, mininterval=0.5, desc="MAML (fused)") as bar, \
                ExitStack() as trusted:
            shapes = None
            for start in range(0, iterations, chunk):
                b = sample_chunk(g)
                now = [tuple(t.shape) for t in (b.x_support, b.y_support, b.x_query, b.y_query)]
                if shapes not in (None, now):  # the guards are skipped (below): shapes must never change
                    raise ValueError(f"sample_chunk must return the same shapes every call; got {now} after {shapes}")
                shapes = now
                shape = (chunk, b.x_support.shape[0] // chunk)
                todo = min(chunk, iterations - start)
                tensors = [t.reshape(*shape, *t.shape[1:]) for t in (b.x_support, b.y_support, b.x_query, b.y_query)]
                per_block = ([self._run_loop(tensors, todo)] if self.loop else self._train_chunk(tensors, todo, trusted))
                losses, pos = torch.cat(per_block), 0  # [todo] meta-losses; read (.item()) once per log window
                for it in self._log_points(start, todo, iterations, log_every):
                    window.append(losses[pos:it - start])
                    pos = it - start
                    history["iteration"].append(it)
                    history["loss"].append(torch.cat(window).mean().item())
                    window.clear()
                window.append(losses[pos:])
                bar.update(min(chunk, iterations - start))
        self.sync()
        return history

    def _train_chunk(self, tensors: list[Tensor], todo: int, trusted: ExitStack) -> list[Tensor]:
        """The first ``todo`` meta-iterations of a chunk ``[chunk, tasks, k_shot, features]``; their losses per block.

        The hot loop of `fit`: blocks of ``unroll`` iterations are views made by one ``split`` per
        tensor, and the compiled call is made directly (shapes were checked once per chunk), so the
        Python per compiled call is a loop step and one call.
        """
        n_full, rest = divmod(todo, self.unroll)
        blocks = list(zip(*(t.split(self.unroll) for t in tensors)))[:n_full]
        out = []
        for xs, ys, xq, yq in blocks:
            self.state, self.t, losses = self._unrolled(self.state, self.t, xs, ys, xq, yq)
            out.append(losses)
            if not self._trusting:  # compiled now: from here on every call has the same shapes
                trusted.enter_context(self._trusted_shapes())
                self._trusting = True
        if rest:  # the last, short block: single steps, compiled now (guards back on)
            trusted.close()
            self._trusting = False
            out.append(self.steps(*(t[todo - rest:todo] for t in tensors)))
        return out

    @staticmethod
    def _log_points(start: int, todo: int, iterations: int, log_every: int) -> list[int]:
        """The iterations in ``(start, start + todo]`` that close a logging window (and the last one)."""
        points = list(range((start // log_every + 1) * log_every, start + todo + 1, log_every))
        if start < iterations <= start + todo and iterations not in points:
            points.append(iterations)
        return points

    @contextmanager
    def _trusted_shapes(self) -> Iterator[None]:
        """Skip torch.compile's guard checks while training: every call has the same shapes and dtypes.

        ``set_stance(skip_guard_eval_unsafe=True)`` (torch >= 2.6) is safe here because nothing that the
        compiled step depends on changes between calls once it has run once; without it, checking
        the guards took about a sixth of each meta-iteration in the chapter 08 profile.
        """
        stance = getattr(torch.compiler, "set_stance", None)
        if stance is None:
            yield
            return
        with stance("default", skip_guard_eval_unsafe=True):
            yield

    def sync(self) -> None:
        """Write θ back into the model's parameters."""
        with torch.no_grad():
            for k, p in self.model.named_parameters():
                p.copy_(self.theta[k])

    @property
    def theta(self) -> Params:
        """The current meta-parameters θ (detached)."""
        return self._unflatten(self.state[0])
