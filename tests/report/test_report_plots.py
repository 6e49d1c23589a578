"""The report's plots (matplotlib): PNG bytes, also at the edges an untrained demo model reaches."""

from __future__ import annotations

import io

import pytest

from focalinfer.metrics.stats import wilson_interval
from focalinfer.report.plots import accuracy_plot, speed_plot

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib", reason="the plots need focalinfer[plot] (make setup installs it)")


def figures(hits1: int, hits5: int, n: int) -> dict:
    out = {}
    for key, hits in (("Acc@1", hits1), ("Acc@5", hits5)):
        out[key] = 100 * hits / n
        out[f"{key}_ci95"] = [100 * v for v in wilson_interval(hits, n)]
    return out


@pytest.mark.parametrize("n", [24, 48, 1000])
def test_accuracy_plot_at_0_and_100_percent(n):
    png = accuracy_plot(["untrained (0 %)", "perfect"], [figures(0, 0, n), figures(n, n, n)])
    image = PIL.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 500


def test_speed_plot_of_one_point_and_of_a_sweep():
    assert PIL.open(io.BytesIO(speed_plot([("runs: onnxruntime", 1, 3.5)]))).format == "PNG"
    sweep = [("runs: ais_bench", b, 100.0 * b ** 0.5) for b in (1, 4, 8, 16, 32, 64)] + [("bench: ort", 16, 40.0)]
    assert PIL.open(io.BytesIO(speed_plot(sweep))).format == "PNG"
    assert speed_plot([]) is None
