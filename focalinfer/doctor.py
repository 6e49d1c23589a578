"""`focalinfer doctor`: what this machine can run (ATC, ais_bench, onnxruntime, OpenVINO, Ray) and why not."""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from pathlib import Path

CANN_VARS = ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "ASCEND_OPP_PATH", "ASCEND_AICPU_PATH")
_VERSION_FILES = ("version.cfg", "ascend_toolkit_install.info", "version.info")


def cann_version(atc_path: str) -> str | None:
    """The toolkit version from the install's version files, walking up from atc."""
    for parent in list(Path(atc_path).resolve().parents)[:5]:
        for name in _VERSION_FILES:
            candidate = parent / name
            if candidate.is_file():
                match = re.search(r"^version\s*=\s*([\w.\-]+)", candidate.read_text(errors="replace"), re.I | re.M)
                if match:
                    return match.group(1)
    return None


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def ais_bench_generation(importable: bool, cli_python: str | None) -> tuple[str | None, str | None]:
    """(generation, why unknown): asked the way infer asks it, the API's session first."""
    from focalinfer.backend.ais_bench import api_generation, cli_generation
    from focalinfer.errors import FocalinferError

    try:
        if importable:
            return api_generation(), None
        return (cli_generation(cli_python), None) if cli_python else (None, None)
    except FocalinferError as e:
        return None, str(e)
def ray_report() -> dict | None:
    """Ray's version and, when a cluster is reachable (RAY_ADDRESS, or one `ray start` began here),
    its alive nodes, CPUs and NPUs; None when Ray is not installed."""
    version = _version("ray")
    if version is None:
        return None
    import logging

    import ray

    from focalinfer.errors import first_line

    from focalinfer.infer.ray_exec import unreachable

    address = os.environ.get("RAY_ADDRESS", "auto")
    already = ray.is_initialized()
    try:
        if not already and (problem := unreachable(address)):
            raise ConnectionError(problem)
        if not already:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        resources = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception as e:  # nothing reachable is a finding, not a failure
        return {"version": version, "cluster": None, "why": f"{address}: {first_line(e)}"}
    finally:
        if not already and ray.is_initialized():
            ray.shutdown()
    cluster = {"address": address, "nodes": nodes, "cpus": int(resources.get("CPU", 0)),
               "npus": int(resources.get("NPU", 0))}
    return {"version": version, "cluster": cluster, "why": None}


def _format_ray(report: dict | None) -> str:
    if report is None:
        return "Ray: not installed (pip install 'focalinfer[ray]' for infer/eval --ray)"
    cluster = report["cluster"]
    if cluster is None:
        return f"Ray: {report['version']}; no cluster reachable ({report['why']}); `ray start --head` starts one"
    return (f"Ray: {report['version']}; cluster {cluster['address']}: {cluster['nodes']} nodes, {cluster['cpus']} CPUs, "
            f"{cluster['npus']} NPUs")


def doctor_report() -> dict:
    from focalinfer.backend.ais_bench import api_available, find_cli_python
    from focalinfer.machine import cpu_count

    atc = shutil.which("atc")
    importable, cli_python = api_available(), find_cli_python()
    generation, generation_problem = ais_bench_generation(importable, cli_python)
    ld_paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if "ascend" in p.lower()]
    report = {
        "python": f"{sys.executable} ({platform.python_version()})",
        "atc": {"path": atc, "cann_version": cann_version(atc) if atc else None},
        "cann_env": {name: os.environ.get(name) for name in CANN_VARS},
        "ld_library_path_ascend": ld_paths,
        "ais_bench": {
            "importable": importable,
            "cli_python": cli_python,
            "version": _version("ais_bench"),
            "generation": generation,
            "generation_problem": generation_problem,
        },
        "cpu_count": cpu_count(),
    }
    try:
        import onnxruntime as ort

        report["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        report["onnxruntime"] = None
    from focalinfer.backend import openvino
    from focalinfer.machine import cpu_model

    report["openvino"] = openvino.version()
    report["cpu"] = cpu_model()
    report["bf16"] = openvino.bf16_supported()
    try:
        import torch

        report["torch"] = torch.__version__
    except ImportError:
        report["torch"] = None
    report["ray"] = ray_report()
    return report


def format_doctor(report: dict) -> str:
    from focalinfer.backend.ais_bench import GENERATION_NOTES
    from focalinfer.backend.openvino import INSTALL_HINT

    atc = report["atc"]
    ais = report["ais_bench"]
    ort = report["onnxruntime"]
    lines = [f"python: {report['python']}"]
    if atc["path"]:
        lines.append(f"atc: {atc['path']} (CANN {atc['cann_version'] or 'version unknown'})")
    else:
        lines.append("atc: not found on PATH (source /usr/local/Ascend/ascend-toolkit/set_env.sh; "
                     "`focalinfer om --dry-run` works without it)")
    for name, value in report["cann_env"].items():
        lines.append(f"{name}: {value or 'not set'}")
    lines.append(f"LD_LIBRARY_PATH Ascend entries: {', '.join(report['ld_library_path_ascend']) or 'none'}")
    if ais["importable"] or ais["cli_python"]:
        where = "importable here" if ais["importable"] else f"runs with {ais['cli_python']} -m ais_bench"
        generation = (f"{ais['generation']} generation ({GENERATION_NOTES[ais['generation']]})" if ais["generation"]
                      else f"generation unknown ({ais['generation_problem']})")
        lines.append(f"ais_bench: {ais['version'] or 'version unknown'}, {where}, {generation}")
    else:
        lines.append("ais_bench: not installed (.om models cannot run here; use --backend onnxruntime with the ONNX)")
    lines.append(f"onnxruntime: {ort['version']} ({', '.join(ort['providers'])})" if ort else "onnxruntime: not installed")
    lines.append(f"OpenVINO: {report['openvino']} (fp32; --precision bf16 {'available' if report['bf16'] else 'not on this CPU'})"
                 if report["openvino"] else f"OpenVINO: not installed ({INSTALL_HINT} adds a second CPU backend)")
    lines.append(f"torch: {report['torch'] or 'not installed'}")
    lines.append(f"CPUs: {report['cpu_count']} ({report['cpu']})")
    lines.append(_format_ray(report.get("ray")))
    return "\n".join(lines)
