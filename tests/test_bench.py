"""The speed table's schema and its learn2learn/course_lib rows (timings themselves are not tested)."""

import pytest

from course_lib import bench


def test_bench_rows_schema_and_speedup_table():
    pytest.importorskip("learn2learn", reason="the suite needs learn2learn: run `make setup`")
    rows = bench.run(batches=(4,), steps=(1,), algos=("maml", "reptile"), impls=("learn2learn", "course_lib"),
                     device="cpu", min_seconds=0.05, min_iters=3, max_iters=5, progress=False)
    assert len(rows) == 4
    for r in rows:
        assert set(r) >= {"impl", "algo", "batch", "steps", "ms_per_iter", "peak_mb", "device"}
        assert r["impl"] in bench.IMPLS and r["algo"] in bench.ALGOS and r["device"] == "cpu"
        assert r["ms_per_iter"] > 0 and r["peak_mb"] >= 0
    table = bench.speedups(rows)
    assert "speedup course_lib" in table.columns and (table["speedup course_lib"] > 0).all()
