"""`focalinfer bench ray`: how far one driver carries a Ray run; measured here with a null model and
carried to Focal-fast-S and VAN-B2 on paper (docs/scaling.md).

These machines have 2 cores: no speed-up can be shown here, but the ceilings can. The null model is
an ONNX that returns the first 1000 values of its 224×224 input (outputs without compute), run
through the real path — ``plan_inference`` + ``execute`` with ``--ray``: the file check on every
node, the actors, the one writer — so every figure is the cost of what surrounds a model:

- the driver's write rate: images/s the one writer can take in and write (its own busy time);
- each actor's fixed cost per batch (the null model's whole cost): its busy time, and its share of
  the wall time (with Ray's task round trip);
- the bytes per image that travel through Ray, with and without ``--ray-ship-inputs``;
- the same null run through Ray Data (``map_batches`` on an actor pool): the dispatch choice.
"""

from __future__ import annotations

import math
import pickle
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from focalinfer import layout
from focalinfer.bench.report import _fmt, _table

NULL_SIZE, NULL_CLASSES = 224, 1000
EVAL_IMAGES = 50_000
# Per-device rates the paper model carries (images/s). The 310P3 figures are the Ascend ModelZoo's
# own tables (spec/models.md: Focal-fast-S 6.06–6.99 for bs 1–64, its AI-CPU ops; VAN-B2 380–875
# for bs 1–32): the low end is used at batch 1, the high end at batch 16. A CPU node's rate is
# focalinfer's best on this 2-CPU machine (docs/benchmarks.json, `bench all`), per 2 CPUs.
NPU_310P3 = {"focal-fast-s": (6.06, 6.99), "van-b2": (380.0, 875.0)}
PAPER_MODELS = ("focal-fast-s", "van-b2")
DEVICE_COUNTS = (1, 8, 64)


def write_null_model(path: Path, size: int = NULL_SIZE, classes: int = NULL_CLASSES) -> Path:
    """image (N, 3, size, size) → its first ``classes`` values per image: no compute, real outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
         helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["class"])],
        "null", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(np.array([v], np.int64), name)
         for name, v in (("starts", 0), ("ends", classes), ("axes", 1))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def write_null_inputs(folder: Path, count: int, size: int = NULL_SIZE) -> Path:
    """``count`` float32 .bin files of one image each, with preprocess's manifest."""
    from focalinfer.records import Manifest

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"null_{i:05d}" for i in range(count)]
    for name in names:
        rng.standard_normal((1, 3, size, size), dtype=np.float32).tofile(folder / f"{name}.bin")
    Manifest(model="null", preset="official", transform={}, shape=[1, 3, size, size],
             files=[{"source": f"{n}.JPEG", "bin": f"{n}.bin"} for n in names]).write(folder)
    return folder


def actor_run(model: Path, inputs: Path, out: Path, name: str, address: str, batch: int, actors: int | None,
              ship: bool) -> dict:
    """One null run through focalinfer's Ray path; its record's Ray section and the start-up seconds."""
    from focalinfer.infer import execute, plan_inference

    plan = plan_inference(model, inputs, output=out / name, output_dirname="result", batch_size=batch,
                          backend="onnxruntime", threads=1, ray=address, ray_actors=actors, ray_ship_inputs=ship,
                          args=["focalinfer", "bench", "ray"])
    started, first = time.perf_counter(), []
    result = execute(plan, force=True, progress=False,
                     on_event=lambda kind, *_: first.append(time.perf_counter()) if kind == "total" else None)
    shutil.rmtree(out / name)  # outputs, summary and record: only the figures are kept
    return {**result.ray, "batch_size": batch, "startup_s": round(first[0] - started, 3)}


class DataActor:
    """Ray Data's ``map_batches`` callable for the comparison: the same BatchActor, one row a batch."""

    def __init__(self, plan: dict, probe: dict, file_bytes: int):
        from focalinfer.infer.ray_actor import BatchActor

        self.actor = BatchActor(plan, probe, file_bytes)

    def __call__(self, rows: dict) -> dict:
        results = [pickle.dumps(self.actor.run(layout.Batch(int(index), tuple(files), int(padding))))
                   for index, files, padding in zip(rows["index"], rows["files"], rows["padding"])]
        return {"index": rows["index"], "result": np.array(results, dtype=object)}


def data_run(model: Path, inputs: Path, out: Path, address: str, batch: int, actors: int) -> dict:
    """The same null run as ``actor_run`` through Ray Data: rows of batches, an actor pool, the
    driver writing what ``iter_rows`` yields."""
    import ray

    from focalinfer.infer import plan_inference
    from focalinfer.infer.ray_exec import for_nodes, node_probe

    plan = for_nodes(plan_inference(model, inputs, output=out / "data", output_dirname="result", batch_size=batch,
                                    backend="onnxruntime", threads=1, ray=address))
    file_bytes = layout.file_data_bytes(plan.files[0])
    batches = layout.plan_batches(list(plan.files), batch)
    out_dir = Path(plan.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = [{"index": b.index, "files": list(b.files), "padding": b.padding} for b in batches]
    started = time.perf_counter()
    dataset = ray.data.from_items(rows).map_batches(
        DataActor, batch_size=1, num_cpus=1, compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"plan": plan.as_dict(), "probe": node_probe(plan), "file_bytes": file_bytes})
    images, first = 0, None
    for row in dataset.iter_rows():
        result = pickle.loads(row["result"])
        layout.write_output_files(str(out_dir), result["files"])
        if first is None:  # its actors are up: what follows compares with the plain actors' run
            first, first_images = time.perf_counter(), len(result["files"])
        images += len(result["files"])
    end = time.perf_counter()
    shutil.rmtree(out / "data")
    return {"batch_size": batch, "actors": actors, "images": images, "startup_s": round(first - started, 3),
            "images_per_s": round((images - first_images) / (end - first), 3) if end > first else None}


def bench_ray(address: str = "local", images: int = 512, batch_sizes=(1, 16), actors: int | None = None,
              workdir: str | Path | None = None, cpu_figures: str | Path | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Every figure of docs/scaling.md: the null runs here, then the paper model."""
    import ray

    from focalinfer.infer.ray_exec import connected
    from focalinfer.machine import cpu_count
    from focalinfer.util import user_cache_dir

    work = Path(workdir) if workdir else user_cache_dir() / "bench-ray"
    work.mkdir(parents=True, exist_ok=True)
    model = write_null_model(work / "null.onnx")
    inputs = work / f"inputs_{images}"
    if not (inputs / "manifest.json").exists():
        write_null_inputs(inputs, images)
    runs, data_runs = [], []
    with connected(ray, address):
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        pool = actors or int(ray.cluster_resources().get("CPU", 1))
        for batch in batch_sizes:
            for ship in (False, True):
                log(f"bench ray: null model, batch {batch}, {'inputs shipped' if ship else 'inputs by path'}, "
                    f"{pool} actors")
                runs.append(actor_run(model, inputs, work / "out", f"b{batch}_{int(ship)}", address, batch, pool, ship))
            log(f"bench ray: the same through Ray Data map_batches, batch {batch}")
            data_runs.append(data_run(model, inputs, work / "out", address, batch, pool))
    figures = {
        "address": address, "nodes": len(nodes), "cpus_here": cpu_count(), "images": images, "actors": pool,
        "null_model": f"ONNX: first {NULL_CLASSES} values of a {NULL_SIZE}x{NULL_SIZE} float32 image (no compute)",
        "runs": runs, "ray_data": data_runs,
    }
    figures["ceilings"] = ceilings(runs)
    figures["paper"] = paper(figures["ceilings"], cpu_rates(cpu_figures))
    return figures


def ceilings(runs: list[dict]) -> dict:
    """Per batch size and input mode: the driver's images/s; each actor's cost per batch — its own busy
    time, and its share of the wall time (``actors × seconds / batches``: its work plus Ray's task round
    trip, and any wait for the driver); bytes per image both ways; start-up seconds."""
    by_batch = {}
    for run in runs:
        batches = sum(a["batches"] for a in run["actors"])
        by_batch.setdefault(run["batch_size"], {})["shipped" if run["ship_inputs"] else "by_path"] = {
            "driver_images_per_s": run["driver_images_per_s"], "images_per_s": run["images_per_s"],
            "actor_busy_ms_per_batch": round(1000 * sum(a["busy_s"] for a in run["actors"]) / max(batches, 1), 3),
            "actor_wall_ms_per_batch": round(1000 * len(run["actors"]) * run["seconds"] / max(batches, 1), 3),
            "input_bytes_per_image": run["input_bytes_per_image"],
            "output_bytes_per_image": run["output_bytes_per_image"], "startup_s": run["startup_s"],
        }
    return {"by_batch": by_batch}


def cpu_rates(path: str | Path | None) -> dict:
    """focalinfer's best images/s per model on the machine `bench all` measured, and its CPU count."""
    import json

    path = Path(path) if path else Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    cpus = data.get("machine", {}).get("cpus_usable")
    return {name: {"img_per_s": data["models"][name]["best_ours"]["img_per_s"], "cpus": cpus, "source": str(path)}
            for name in PAPER_MODELS if name in data.get("models", {})}


def _device_rate(rate: float, batch: int, actor_ms_per_batch: float) -> float:
    """A device's images/s once its actor's cost per batch (the null model's, all overhead) is added."""
    return 1.0 / (1.0 / rate + actor_ms_per_batch / 1000 / batch)


def _eval_seconds(devices: int, rate: float, driver: float, batch: int, startup: float) -> float:
    """50,000 images: the busiest device's share of batches, or the driver's writing, whichever is longer."""
    batches = math.ceil(EVAL_IMAGES / batch)
    return startup + max(math.ceil(batches / devices) * batch / rate, EVAL_IMAGES / driver)


def paper(ceil: dict, cpu: dict) -> list[dict]:
    """Per model, device kind and batch: how many devices one driver feeds, and 50,000 images on 1, 8, 64."""
    rows = []
    for name in PAPER_MODELS:
        devices = {"310P3 NPU": {1: NPU_310P3[name][0], 16: NPU_310P3[name][1]}}
        if name in cpu:
            devices[f"CPU node ({cpu[name]['cpus']} CPUs)"] = {1: cpu[name]["img_per_s"], 16: cpu[name]["img_per_s"]}
        for kind, rates in devices.items():
            for batch, rate in rates.items():
                measured = ceil["by_batch"].get(batch, {}).get("by_path")
                if measured is None:
                    continue
                effective = _device_rate(rate, batch, measured["actor_wall_ms_per_batch"])
                driver = measured["driver_images_per_s"]
                rows.append({
                    "model": name, "device": kind, "batch_size": batch, "device_img_per_s": rate,
                    "effective_img_per_s": round(effective, 3), "driver_img_per_s": driver,
                    "devices_one_driver_feeds": int(driver // effective),
                    "eval_seconds": {str(n): round(_eval_seconds(n, effective, driver, batch, measured["startup_s"]), 1)
                                     for n in DEVICE_COUNTS},
                })
    return rows


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def render_scaling(figures: dict) -> str:
    """docs/scaling.md's generated section."""
    ceil = figures["ceilings"]
    lines = [f"Measured on this machine: {figures['cpus_here']} CPUs, Ray at `{figures['address']}` "
             f"({figures['nodes']} node(s)), {figures['actors']} CPU actors, {figures['images']} images, "
             f"null model ({figures['null_model']}), TXT outputs.", ""]
    rows = []
    for batch, entry in sorted(ceil["by_batch"].items()):
        data = next((d for d in figures["ray_data"] if str(d["batch_size"]) == str(batch)), None)
        for key, label in (("by_path", "paths (shared FS)"), ("shipped", "--ray-ship-inputs")):
            m = entry.get(key)
            if m:
                rows.append([batch, label, _fmt(m["driver_images_per_s"]), _fmt(m["images_per_s"]),
                             _fmt(m["actor_busy_ms_per_batch"], 2), _fmt(m["actor_wall_ms_per_batch"], 2),
                             f"{m['input_bytes_per_image']:,}", f"{m['output_bytes_per_image']:,}",
                             _fmt(m["startup_s"], 1)])
        if data:
            rows.append([batch, "paths, through Ray Data", "–", _fmt(data["images_per_s"]), "–", "–", "–", "–",
                         _fmt(data["startup_s"], 1)])
    lines.append(_table(["batch", "inputs / dispatch", "driver ceiling img/s", "run img/s (all actors)",
                         "actor busy ms/batch", "actor wall ms/batch", "in B/image", "out B/image", "start-up s"], rows))
    lines += ["", "On paper (device rates: 310P3 from the ModelZoo's tables, a CPU node from `bench all` here; each "
                  "device slowed by its actor's wall ms per batch above, inputs by path; one driver):", ""]
    rows = [[r["model"], r["device"], r["batch_size"], _fmt(r["device_img_per_s"], 2), _fmt(r["driver_img_per_s"]),
             r["devices_one_driver_feeds"], *(_duration(r["eval_seconds"][str(n)]) for n in DEVICE_COUNTS)]
            for r in figures["paper"]]
    lines.append(_table(["model", "device", "batch", "device img/s", "driver img/s", "devices one driver feeds",
                         *(f"50,000 images on {n}" for n in DEVICE_COUNTS)], rows))
    return "\n".join(lines)
