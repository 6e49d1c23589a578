"""bench preprocess: float32 and uint8 side by side (moved here from tests/test_benchmark.py)."""

from __future__ import annotations


def test_bench_preprocess_runs_float32_and_uint8_side_by_side(tmp_path):
    from focalinfer.bench.preprocess import bench_preprocess

    figures = bench_preprocess(count=3, rounds=2, workers=1, workdir=tmp_path)
    assert (figures["float32_bytes_per_image"], figures["uint8_bytes_per_image"]) == (602_112, 150_528)
    for key in ("baseline", "workers_1", "uint8_workers_1"):
        assert figures[f"{key}_img_per_s"] > 0
    assert figures["uint8_vs_float32_workers_1"] > 0 and figures["cpu"]
    assert not list(tmp_path.iterdir())  # its scratch folder is removed
