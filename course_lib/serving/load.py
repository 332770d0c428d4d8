"""Load benchmark of the service: a bounded burst of answers from concurrent clients on loopback.

Derived in chapter 10, section 7. Starts ``python -m course_lib.serving`` on 127.0.0.1 (a free port,
a fresh SQLite file), then, for the student and for the teacher in turn, sends ``--requests``
POST /learners/{id}/responses from ``--clients`` concurrent clients (httpx, asyncio), learners and
answers drawn with a fixed seed, and prints throughput and p50 / p99 latency. Not a test: a
measurement, whose figures depend on the machine and on what else runs on it.

    python -m course_lib.serving.load --requests 5000 --clients 16 --json results/serving_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["burst", "run", "main"]

MAX_REQUESTS = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def burst(url: str, model: str, requests: int, clients: int, n_items: int, seed: int = 0,
                learners: int = 500) -> dict:
    """Send ``requests`` answers from ``clients`` concurrent clients; return throughput and latency."""
    import httpx

    rng = np.random.default_rng(seed)
    plan = list(zip(rng.integers(learners, size=requests), rng.integers(n_items, size=requests),
                    rng.integers(2, size=requests)))
    latencies: list[float] = []
    errors = 0
    queue = iter(plan)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for learner, item, correct in queue:
            t0 = time.perf_counter()
            r = await c.post(f"{url}/learners/{model}-{learner}/responses?model={model}",
                             json={"item": int(item), "correct": int(correct)})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1e3
    return {"model": model, "requests": requests, "clients": clients, "errors": errors, "wall_s": wall,
            "throughput_rps": requests / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def run(model_file: str, requests: int = 5000, clients: int = 16, models: Sequence[str] = ("student", "teacher"),
        seed: int = 0) -> dict:
    """Start the server on loopback, run one `burst` per model, stop the server; return the figures."""
    import httpx

    if not 1 <= requests <= MAX_REQUESTS or not 1 <= clients <= 256:
        raise ValueError(f"requests must lie in 1..{MAX_REQUESTS} and clients in 1..256, got {requests}, {clients}")
    port, root = _free_port(), Path(__file__).resolve().parents[2]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "course_lib.serving", "--port", str(port), "--model",
                                 model_file, "--db", f"{tmp}/load.sqlite3"], env=env)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = httpx.get(url + "/health", timeout=2).json()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the server did not start; run python -m course_lib.serving to see why")
                    time.sleep(0.3)
            rows = [asyncio.run(burst(url, m, requests, clients, health["n_items"], seed)) for m in models]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"rows": rows, "config": {"requests": requests, "clients": clients, "model_file": model_file,
                                     "seed": seed, "cpu_count": os.cpu_count(),
                                     "load_avg_1min": os.getloadavg()[0]}}


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``--requests``, ``--clients``, ``--model``, ``--json``."""
    from course_lib.experiments.common import save_json
    from course_lib.serving.__main__ import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--models", nargs="+", default=["student", "teacher"], choices=["student", "teacher"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = run(args.model, args.requests, args.clients, args.models)
    for r in out["rows"]:
        print(f"{r['model']:8s} {r['requests']} requests, {r['clients']} clients: {r['throughput_rps']:.0f} req/s, "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}")
    if args.json:
        print(f"wrote {save_json(out, args.json)}")
    return out


if __name__ == "__main__":
    main()
