"""Per-model preparation, cached in the work directory: synthetic checkpoint, exports, CPU graphs, MACs.

Exports are reused only while the code and tools that made them are unchanged (:func:`_code_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from focalinfer.bench.settings import BACKENDS, NAIVE_BACKENDS, Log, _stderr
from focalinfer.errors import FocalinferError, first_line

@dataclass
class PreparedGraph:
    """One exported graph kind ('rewritten' or 'naive') of a model.

    Dynamic batch when its parity holds at every batch size; otherwise (a batch count frozen by
    tracing, as in the official Focal code) one static-batch export per batch size, and ``note``
    says why. ``error`` is set when no graph of this kind passes parity at all.
    """

    kind: str
    dynamic: bool = True
    paths: dict[str, str] = field(default_factory=dict)  # 'dynamic' or str(batch size) → ONNX path
    report: dict = field(default_factory=dict)  # export report of the first graph made
    cpu_graphs: dict[str, dict] = field(default_factory=dict)  # same keys → build_cpu_graph record
    note: str | None = None
    error: str | None = None

    def path_for(self, batch_size: int) -> Path | None:
        path = self.paths.get("dynamic" if self.dynamic else str(batch_size))
        return Path(path) if path else None

    def cpu_graph_for(self, batch_size: int) -> dict:
        return self.cpu_graphs.get("dynamic" if self.dynamic else str(batch_size), {})


@dataclass
class PreparedModel:
    name: str
    input_size: int
    checkpoint: str
    graphs: dict[str, PreparedGraph]
    macs: dict = field(default_factory=dict)  # kind → MacCount dict

    @classmethod
    def from_dict(cls, d: dict) -> "PreparedModel":
        return cls(name=d["name"], input_size=d["input_size"], checkpoint=d["checkpoint"],
                   graphs={k: PreparedGraph(**g) for k, g in d["graphs"].items()}, macs=d.get("macs", {}))


def default_workdir() -> Path:
    from focalinfer.util import user_cache_dir

    return user_cache_dir() / "bench"


def _code_fingerprint() -> str:
    """Exports are reused only while the code and tools that made them are unchanged."""
    import onnx
    import onnxruntime
    import torch

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{torch.__version__} {onnx.__version__} {onnxruntime.__version__}".encode())
    for path in sorted([root / "registry.py", *root.glob("models/*.py"), *root.glob("export/*.py"),
                        *root.glob("export/**/*.json"), *root.glob("data/*.json"), root / "backend" / "onnxrt.py"]):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def prepare_model(name: str, workdir: Path, batch_sizes: list[int], log: Log = _stderr,
                  threads: int | None = None, backends: Sequence[str] = tuple(BACKENDS)) -> PreparedModel:
    """Synthetic checkpoint, the exports and CPU graphs ``backends`` need, MACs — reused from
    ``workdir`` when made by the same code; only what is missing (e.g. a new static batch size)
    is made."""
    from focalinfer.models.synthetic import make_checkpoint
    from focalinfer.registry import get_model_spec
    from focalinfer.util import ensure_writable_dir, write_json_atomic

    spec = get_model_spec(name)
    folder = ensure_writable_dir(workdir / name, "benchmark work directory")
    key_file = folder / "prepared.json"
    fingerprint = _code_fingerprint()
    prepared = _cached_preparation(key_file, fingerprint)
    if prepared:
        log(f"  {name}: reusing checkpoint and exports in {folder}")
    else:
        checkpoint = make_checkpoint(name, folder / f"{name}.synthetic.pth", seed=0)
        prepared = PreparedModel(name=name, input_size=spec.input_size, checkpoint=str(checkpoint), graphs={})
    started = time.perf_counter()
    exports = cpu_graphs = 0
    kinds = ["rewritten"] + (["naive"] if set(NAIVE_BACKENDS) & set(backends) else [])
    for kind in kinds:
        graph = prepared.graphs.setdefault(kind, PreparedGraph(kind))
        exports += _ensure_graph(prepared, graph, folder, batch_sizes, threads, log)
        if kind == "rewritten" and "ort_cpu" in backends:
            cpu_graphs += _ensure_cpu_graphs(graph, threads)
        # Written after each graph, so an interrupted preparation resumes where it stopped.
        write_json_atomic(key_file, {"fingerprint": fingerprint, "model": asdict(prepared)})
    if prepared.graphs["rewritten"].error:
        raise FocalinferError(f"{name}: the rewritten export fails parity ({prepared.graphs['rewritten'].error})")
    if exports or cpu_graphs:
        log(f"  {name}: {exports} export(s), {cpu_graphs} CPU graph(s) in {time.perf_counter() - started:.0f} s")
    return prepared


def _cached_preparation(key_file: Path, fingerprint: str) -> PreparedModel | None:
    cached = _read_json(key_file)
    if not cached or cached.get("fingerprint") != fingerprint:
        return None
    try:
        prepared = PreparedModel.from_dict(cached["model"])
    except (KeyError, TypeError):  # written by an older focalinfer
        return None
    files = [prepared.checkpoint, *(p for g in prepared.graphs.values() for p in g.paths.values())]
    return prepared if all(Path(f).is_file() for f in files) else None


def _ensure_graph(prepared: PreparedModel, graph: PreparedGraph, folder: Path, batch_sizes: list[int],
                  threads: int | None, log: Log) -> int:
    """Export what ``batch_sizes`` need of this graph kind; returns how many exports were made."""
    from focalinfer.bench.macs import count_macs
    from focalinfer.export import ParityError

    if graph.error or (graph.dynamic and "dynamic" in graph.paths):
        return 0
    made = 0
    if graph.dynamic:
        try:
            _export_graph(prepared, graph, folder, None, threads)
            made += 1
        except ParityError as e:
            graph.dynamic = False
            graph.note = f"the dynamic-batch export fails parity ({first_line(e)}); exported per batch size instead"
            log(f"  {prepared.name}: {graph.kind} {graph.note}")
    if not graph.dynamic:
        for size in batch_sizes:
            if str(size) in graph.paths:
                continue
            try:
                _export_graph(prepared, graph, folder, size, threads)
                made += 1
            except ParityError as e:
                graph.error = f"static batch {size}: {first_line(e)}"
                log(f"  {prepared.name}: {graph.kind} graph unusable: {graph.error}")
                return made
    if graph.kind not in prepared.macs:
        size = None if graph.dynamic else min(int(k) for k in graph.paths)
        path = graph.path_for(size or 1)
        prepared.macs[graph.kind] = count_macs(path, batch_size=size or 1).as_dict()
    return made


def _export_graph(prepared: PreparedModel, graph: PreparedGraph, folder: Path, batch_size: int | None,
                  threads: int | None) -> None:
    from focalinfer.export import export_onnx

    stem = prepared.name + ("" if graph.kind == "rewritten" else ".naive")
    key = "dynamic" if batch_size is None else str(batch_size)
    path = folder / (f"{stem}.onnx" if batch_size is None else f"{stem}.bs{batch_size}.onnx")
    report = export_onnx(prepared.name, prepared.checkpoint, path, batch_size=batch_size or 1,
                         dynamic_batch=batch_size is None, rewrites=graph.kind == "rewritten",
                         parity_samples=2, force=True)
    graph.paths[key] = str(path)
    graph.report = graph.report or report.as_dict()


def _ensure_cpu_graphs(graph: PreparedGraph, threads: int | None) -> int:
    """The transformer optimiser's CPU graph beside each rewritten export that lacks one."""
    from focalinfer.bench.cpu_graph import build_cpu_graph

    missing = [key for key in graph.paths if key not in graph.cpu_graphs]
    for key in missing:
        graph.cpu_graphs[key] = build_cpu_graph(graph.paths[key], threads=threads)
    return len(missing)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
