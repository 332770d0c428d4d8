"""The benchmark's tables: schema, the contract (timings only in details), speed-ups (timings are not tested)."""

import pytest

from course_lib import bench
from course_lib.experiments.common import Registry


def test_speed_table_schema_and_speedups():
    pytest.importorskip("learn2learn", reason="the suite needs learn2learn: run `make setup`")
    config = bench.Config(tables=("speed",), batches=(4,), steps=(1,), algos=("maml", "reptile"),
                          impls=("learn2learn", "course_lib"), min_seconds=0.05, min_iters=3, max_iters=5)
    result = bench.run(config, device="cpu", progress=False)
    assert len(result.rows) == 4 and len(result.details["timings"]) == 4
    for r, t in zip(result.rows, result.details["timings"]):
        assert set(r) == {"table", "impl", "algo", "batch", "steps", "device"}  # no timing in rows
        assert r["impl"] in bench.IMPLS and r["algo"] in bench.ALGOS and r["device"] == "cpu"
        assert t["ms_per_iter"] > 0 and t["peak_mb"] >= 0
    table = bench.tables(result)["speed"]
    assert "speedup course_lib" in table.columns and (table["speedup course_lib"] > 0).all()
    assert result.to_dict(timing=False)["details"] == {}


def test_meta_batch_scaling_rows():
    rows = bench.meta_batch_scaling((1, 8), device="cpu", min_iters=2, min_seconds=0.0)
    assert [r["batch"] for r in rows] == [1, 8]
    for r in rows:
        assert r["tasks_per_s"] == pytest.approx(1e3 * r["batch"] / r["ms_per_iter"])
    with pytest.raises(ValueError, match="meta-batch sizes"):
        bench.meta_batch_scaling((0,))


def test_tables_are_a_registry():
    assert isinstance(bench.TABLES, Registry)
    assert set(bench.TABLES.names()) == {"speed", "meta_batch", "processes"}
    with pytest.raises(ValueError, match="unknown bench table"):
        bench.run(bench.Config(tables=("nope",)), device="cpu", progress=False)
