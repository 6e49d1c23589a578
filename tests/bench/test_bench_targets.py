"""Issue 13's goal table and the per-round 'focalinfer vs best peer' ratio, on made-up figures."""

from __future__ import annotations

import pytest

from focalinfer.bench.inference import best_figures
from focalinfer.bench.targets import evaluate_goal
from focalinfer.bench.timing import summarize_timings


def _timings(per_round_ms: dict) -> dict:
    return {name: {"latencies_ms": [[ms] for ms in rounds], "warmup": 1} for name, rounds in per_round_ms.items()}


def test_ours_is_compared_with_the_fastest_peer_of_each_round():
    # Round 1: ov_naive is the fastest peer (100 ms), round 2 eager is (50 ms); ours runs 80 ms then 100 ms.
    timings = _timings({"ort": [80, 100], "ov_naive": [100, 200], "eager": [160, 50]})
    summary = summarize_timings(timings, 4, ours="ort", peers=("ort_naive", "ov_naive", "eager"))
    ours = summary["ours"]
    assert ours["vs_best_peer"] == pytest.approx((100 / 80 + 50 / 100) / 2, abs=1e-3)  # median of 1.25 and 0.5
    assert summary["fastest"] == "ort"  # fastest by median latency over all calls (90 ms)
    assert ours["best_peer"] == "eager" and ours["best_peer_img_per_s"] == summary["results"]["eager"]["img_per_s"]
    assert "ours" not in summarize_timings(timings, 4)  # no peers asked for: no verdict


def _batch(size, rates, ours="ort"):
    summary = summarize_timings(_timings({k: [1000 * size / v] * 2 for k, v in rates.items()}), size, ours=ours,
                                peers=("ort_naive", "ov_naive", "eager"))
    summary["ours"]["fraction_of_limit"] = rates[ours] / 100
    return summary


def _record(batches):
    return {"batches": batches, "peers": ["ort_naive", "eager"],
            **best_figures(batches, ["ort", "ort_naive", "eager"])}


def test_goal_rows_for_the_lead_model():
    batches = [_batch(1, {"ort": 10.0, "ort_naive": 9.0, "eager": 5.0}),
               _batch(4, {"ort": 12.0, "ort_naive": 13.0, "eager": 6.0}),
               _batch(16, {"ort": 9.0, "ort_naive": 11.0, "eager": 6.5})]
    rows = {r["target"].split(";")[0]: r for r in evaluate_goal({"focal-fast-s": _record(batches)})}
    peer = rows["focal-fast-s: focalinfer ÷ best peer (best batches)"]
    # ours' best is 12 at bs 4, the best peer's best is ort_naive's 13 at bs 4 (each at its own best batch).
    assert peer["value"] == round(12 / 13, 3) and peer["met"] is False and "best peer ort_naive 13.00" in peer["detail"]
    assert rows["focal-fast-s: fraction of the fp32 GEMM limit (best batch)"]["value"] == 0.12
    cliff = rows["focal-fast-s: slowest batch 4–64 ÷ best batch"]
    assert cliff["value"] == 0.75 and cliff["met"] is False and "bs 16" in cliff["detail"]  # 9 / 12; bs 1 is outside


def test_goal_says_what_was_not_measured():
    batches = [_batch(1, {"ort": 10.0, "ort_naive": 9.0, "eager": 5.0})]
    rows = evaluate_goal({"van-b2": _record(batches), "twins-altgvt-s": {"skipped": "no weights"}})
    by_name = {r["target"].split(";")[0]: r for r in rows}
    assert by_name["van-b2: focalinfer ÷ best peer (best batches)"]["met"] is True
    assert "ov_naive" in next(r["target"] for r in rows if r["target"].startswith("van-b2: focalinfer"))
    cliff = by_name["van-b2: slowest batch 4–64 ÷ best batch"]
    assert cliff["met"] is None and "no batch size 4–64" in cliff["not_measured"]
    skipped = by_name["twins-altgvt-s: focalinfer ÷ best peer (best batches)"]
    assert skipped["met"] is None and skipped["not_measured"] == "no weights"


def test_side_by_side_ratios_pair_each_round_so_drift_between_batch_sizes_cancels():
    from focalinfer.bench.side_by_side import summarize_side_by_side

    # The machine slows down 30 % from round 1 to round 3; within each round bs 8 runs at 0.9 of bs 4.
    drift = [1.0, 0.85, 0.7]
    configs = [("focalinfer", 4), ("focalinfer", 8), ("ov_naive", 1), ("eager", 16)]
    rates = {"focalinfer@4": [10 * d for d in drift], "focalinfer@8": [9 * d for d in drift],
             "ov_naive@1": [8 * d for d in drift], "eager@16": [11 * drift[0], 2, 2]}
    side = summarize_side_by_side(configs, rates)
    assert side["ours_best"] == "focalinfer@4" and side["configs"]["focalinfer@4"]["img_per_s"] == 8.5
    assert side["vs_best_batch"] == {"4": 1.0, "8": 0.9}
    # the best peer is taken per round: eager in round 1 (10 / 11), ov_naive after it (10 / 8 twice)
    assert side["vs_best_peer"] == round(10 / 8, 3) and side["best_peer"] == "ov_naive@1"  # by median img/s


def test_goal_is_read_from_the_side_by_side_measurement_when_there_is_one():
    batches = [_batch(1, {"ort": 10.0, "ort_naive": 9.0, "eager": 5.0}),
               _batch(4, {"ort": 12.0, "ort_naive": 13.0, "eager": 6.0}),
               _batch(16, {"ort": 6.0, "ort_naive": 11.0, "eager": 6.5})]  # swept while the machine was slow
    record = _record(batches)
    record["side_by_side"] = {
        "rounds": 3, "ours_best": "focalinfer@4", "best_peer": "ort_naive@4", "vs_best_peer": 1.04,
        "vs_best_batch": {"4": 1.0, "16": 0.91}, "fraction_of_limit": 0.7,
        "configs": {"focalinfer@4": {"backend": "focalinfer", "batch_size": 4, "img_per_s": 12.5},
                    "focalinfer@16": {"backend": "focalinfer", "batch_size": 16, "img_per_s": 11.4},
                    "ort_naive@4": {"backend": "ort_naive", "batch_size": 4, "img_per_s": 12.0},
                    "eager@16": {"backend": "eager", "batch_size": 16, "img_per_s": 6.4}}}
    rows = {r["target"].split(";")[0]: r for r in evaluate_goal({"focal-fast-s": record})}
    peer = rows["focal-fast-s: focalinfer ÷ best peer (best batches)"]
    assert peer["value"] == 1.04 and peer["met"] is True and "side by side, 3 rounds" in peer["detail"]
    assert "best peer ort_naive 12.00 img/s at bs 4" in peer["detail"]
    assert rows["focal-fast-s: fraction of the fp32 GEMM limit (best batch)"]["value"] == 0.7
    cliff = rows["focal-fast-s: slowest batch 4–64 ÷ best batch"]
    assert cliff["value"] == 0.91 and cliff["met"] is True and cliff["detail"].startswith("bs 16: 11.40 img/s (ort)")


def test_the_gemm_limit_is_taken_in_the_same_rounds_as_focalinfer():
    from focalinfer.bench.side_by_side import summarize_side_by_side

    # Round 2 runs at half speed for everything: the fraction of the limit stays 0.5 in every round.
    configs = [("focalinfer", 16)]
    rates = {"focalinfer@16": [5.0, 2.5, 5.0]}
    gemm = {"torch": [180.0, 90.0, 170.0], "onnxruntime": [200.0, 100.0, 190.0]}
    macs = 10e9  # 20 GFLOP per image: 5 img/s is 100 GFLOP/s
    side = summarize_side_by_side(configs, rates, gemm, macs)
    assert side["limit_gflops_per_round"] == [200.0, 100.0, 190.0]
    assert side["fraction_of_limit"] == 0.5 and side["gemm_gflops"] == {"torch": 170.0, "onnxruntime": 190.0}
    assert "fraction_of_limit" not in summarize_side_by_side(configs, rates)  # no GEMM in the rounds
