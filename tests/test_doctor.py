"""doctor's Ray line: its version, and the cluster it can reach or why none (the cluster case is in
tests/infer/test_infer_ray.py, on a real cluster)."""

from __future__ import annotations

from importlib import metadata

from focalinfer import doctor


def test_ray_without_a_reachable_cluster_says_why_at_once(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there: refused at once, no minutes of retries
    report = doctor.ray_report()
    assert report["version"] == metadata.version("ray") and report["cluster"] is None
    assert "nothing answers at 127.0.0.1:1" in report["why"]
    assert doctor._format_ray(report).startswith(f"Ray: {report['version']}; no cluster reachable (127.0.0.1:1: ")


def test_ray_lines():
    assert doctor._format_ray(None) == "Ray: not installed (pip install 'focalinfer[ray]' for infer/eval --ray)"
    cluster = {"address": "auto", "nodes": 3, "cpus": 96, "npus": 8}
    assert doctor._format_ray({"version": "2.60.0", "cluster": cluster, "why": None}) == \
        "Ray: 2.60.0; cluster auto: 3 nodes, 96 CPUs, 8 NPUs"
