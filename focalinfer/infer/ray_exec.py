"""A plan run on a Ray cluster (``--ray``), the driver side; ``infer.ray_actor`` is the workers' side.

1. connect (``ray.init``; a process already connected to Ray runs there);
2. check every node that could host one of the run's actors: it must see the model file (and,
   unless the driver ships the inputs, the input folder) as the driver does — else one line naming
   the node and the path, before any work;
3. start the actors: one per NPU (``resources={"NPU": 1}``: Ray sets ``ASCEND_RT_VISIBLE_DEVICES``
   and the actor runs its device 0) or CPU actors of ``--threads`` CPUs each, spread over the nodes;
   each opens one runner, once;
4. split the files into batches exactly as a local run does (``engine.plan_file_work``: the same
   batches, padding and resume), send the pending ones (their paths, or their bytes through the
   object store with ``--ray-ship-inputs``) and write every returned batch here, through ``layout``:
   one writer, each batch once, whatever Ray retried or restarted;
5. the summary (``engine.write_file_summary``) and the infer record get the actors' rates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

from focalinfer import __version__, layout
from focalinfer.defaults import (
    RAY_ACTOR_RESTARTS, RAY_BATCHES_IN_FLIGHT, RAY_CHECK_TIMEOUT_S, RAY_CONNECT_TIMEOUT_S, RAY_PLACE_TIMEOUT_S,
)
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError, first_line
from focalinfer.infer.engine import JobOutcome, plan_file_work, write_file_summary
from focalinfer.infer.plan import InferPlan
from focalinfer.log import info
from focalinfer.util import sha256_file

NOTE_EVERY_S = 30  # how often the driver says it is still waiting for Ray to place the actors


@dataclass
class RayOutcome(JobOutcome):
    backend: str = ""         # the actors' backends ('+'-joined when the nodes decided differently)
    ray: dict | None = None   # the record's and summary's Ray section (see ray_section)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ToolMissingError("--ray needs Ray here and on every node: pip install 'focalinfer[ray]' "
                               "(the same Ray and focalinfer versions everywhere)") from None
    return ray


def unreachable(address: str) -> str | None:
    """Why nothing answers at a cluster address (HOST:PORT, ray://HOST:PORT, or 'auto' naming one through
    RAY_ADDRESS), or None; ray.init would retry such an address for many minutes."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not (sep and host and port.isdigit()):
        return None  # 'local', or no address: Ray starts or finds one here at once
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            return None
    except OSError as e:
        return f"nothing answers at {target} ({e.strerror or e})"


@contextlib.contextmanager
def connected(ray, address: str):
    """Connected to the cluster at ``address`` for the block ('local': a Ray started here for this run,
    stopped after it; 'auto': the one running here or RAY_ADDRESS's); a process already connected to
    Ray keeps its connection."""
    if ray.is_initialized():
        yield
        return
    problem = unreachable(address)
    if problem:
        raise FocalinferError(f"--ray {address}: {problem}; check the address (`ray status` on the head prints it)")
    kwargs = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise FocalinferError(f"--ray {address}: no Ray cluster there ({first_line(e)}); start one with "
                              "`ray start --head`, or pass its address (auto, ray://HOST:10001, HOST:PORT)") from None
    try:
        yield
    finally:
        ray.shutdown()


def run_on_ray(plan: InferPlan, progress: bool = True, on_event: Callable[..., None] | None = None) -> RayOutcome:
    """Run ``plan`` (a file run with ``plan.ray`` set) on the cluster; outputs land in its folder here."""
    ray = import_ray()
    with connected(ray, plan.ray):
        file_bytes = layout.file_data_bytes(plan.files[0])
        nodes_plan = for_nodes(plan)
        probe = node_probe(nodes_plan)
        nodes = actor_nodes(ray, plan)
        check_nodes(ray, nodes, probe)
        actors = start_actors(ray, nodes_plan, actor_count(plan, nodes), probe, file_bytes)
        try:
            described = describe(ray, actors)
            first = described[0]
            work = plan_file_work(plan, file_bytes, first["per_batch"], first["num_outputs"])
            if on_event:
                on_event("total", len(work.batches), len(work.batches) - len(work.pending))
            run = Dispatch(ray, plan, actors, described, file_bytes, dict(zip(plan.files, nodes_plan.files)))
            run.run(work.pending, progress, on_event)
        finally:
            for actor in actors:
                ray.kill(actor)
    section = ray_section(plan, run)
    path, summary = write_file_summary(plan, work, run.compute_ms(), first["batch_size"], {"ray": section})
    backend = "+".join(sorted({d["backend"] for d in described}))
    return RayOutcome(plan.output_dir, path, first["batch_size"], summary.get("throughput"), run.written, work.kept,
                      backend=backend, ray=section)


# --- before any work: which nodes, and do they see the files ----------------------------------


def _need(plan: InferPlan) -> tuple[str, float]:
    """The resource one actor takes: an NPU for an .om, ``--threads`` CPUs (default 1) for an .onnx."""
    return ("NPU", 1) if plan.backend == "ais_bench" else ("CPU", plan.runner.threads or 1)


def actor_nodes(ray, plan: InferPlan) -> list[dict]:
    """The alive nodes with room for one actor of this run (the only ones that will read its files)."""
    kind, amount = _need(plan)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(kind, 0) >= amount]
    if not nodes:
        hint = ("start the NPU nodes with `ray start … --resources '{\"NPU\": N}'` (Ray detects Ascend NPUs "
                "when CANN is set up)" if kind == "NPU" else "lower --threads")
        raise FocalinferError(f"--ray {plan.ray}: no node of the cluster has {amount:g} {kind} for an actor; {hint}")
    return nodes


def actor_count(plan: InferPlan, nodes: list[dict]) -> int:
    """--ray-actors, or as many actors as the nodes hold (never more than there are input files)."""
    kind, amount = _need(plan)
    room = sum(int(n["Resources"].get(kind, 0) // amount) for n in nodes)
    if plan.ray_actors and plan.ray_actors > room:
        raise UsageError(f"--ray-actors {plan.ray_actors}: the cluster has room for {room} actors of "
                         f"{amount:g} {kind} each")
    return min(plan.ray_actors or room, len(plan.files))


def for_nodes(plan: InferPlan) -> InferPlan:
    """The plan with absolute paths: a worker's working folder is not the driver's. (The driver keeps
    the paths as given: the summary names the inputs as a local run does.)"""
    model_file = os.path.abspath(plan.model.path)
    manifest = plan.input_files.manifest
    return replace(plan, model=replace(plan.model, path=model_file), runner=replace(plan.runner, model_file=model_file),
                   input_dir=os.path.abspath(plan.input_dir), files=tuple(os.path.abspath(f) for f in plan.files),
                   input_files=replace(plan.input_files, manifest=manifest and os.path.abspath(manifest)))


def node_probe(plan: InferPlan) -> dict:
    """What every node must see as the driver does (``ray_actor.check_node``): the model file, and the
    input folder, its first file and manifest unless the driver ships the inputs."""
    probe = {"model_file": plan.model.path, "model_bytes": os.path.getsize(plan.model.path), "version": __version__}
    if not plan.ray_ship_inputs:
        manifest = plan.input_files.manifest
        probe.update(input_dir=plan.input_dir, first_file=plan.files[0], first_file_bytes=os.path.getsize(plan.files[0]),
                     manifest=manifest, manifest_sha256=sha256_file(manifest) if manifest else None)
    return probe


def check_nodes(ray, nodes: list[dict], probe: dict) -> None:
    """One tiny task pinned to each node (no CPU taken); the first node with a problem stops the run."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from focalinfer.infer.ray_actor import check_node, node_label

    task = ray.remote(num_cpus=0, max_retries=0)(check_node)
    refs = {task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(probe): n
            for n in nodes}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=RAY_CHECK_TIMEOUT_S)
    if late:
        node = refs[late[0]]
        raise FocalinferError(f"node {node['NodeManagerAddress']} ({node['NodeID'][:12]}): did not answer the file "
                              f"check in {RAY_CHECK_TIMEOUT_S} s; is its raylet healthy?")
    for ref in ready:
        try:
            view = ray.get(ref)
        except ray.exceptions.RayError as e:  # the node left, or its worker could not start
            node = refs[ref]
            raise FocalinferError(f"node {node['NodeManagerAddress']} ({node['NodeID'][:12]}): the file check "
                                  f"failed ({first_line(e)}); is focalinfer {__version__} installed there?") from None
        if view["problem"]:
            fix = ("every node must see it at the same path (a shared filesystem)"
                   + ("" if probe.get("input_dir") is None else ", or pass --ray-ship-inputs for the inputs"))
            raise FocalinferError(f"{node_label(view)}: {view['problem']}; {fix}")


# --- the actors -----------------------------------------------------------------------------


def start_actors(ray, plan: InferPlan, count: int, probe: dict, file_bytes: int) -> list:
    """``count`` actors spread over the nodes, each given the plan as plain data with only its first file
    (each batch brings its own paths) and its device 0 / its threads; Ray restarts a dead one and
    retries its batch."""
    from focalinfer.infer.ray_actor import BatchActor

    kind, amount = _need(plan)
    runner = replace(plan.runner, device=0, threads=None if kind == "NPU" else int(amount))
    actor_plan = replace(plan, files=plan.files[:1], runner=runner).as_dict()
    resources = {"num_cpus": 0, "resources": {"NPU": 1}} if kind == "NPU" else {"num_cpus": amount}
    cls = ray.remote(max_restarts=RAY_ACTOR_RESTARTS, max_task_retries=RAY_ACTOR_RESTARTS,
                     scheduling_strategy="SPREAD", **resources)(BatchActor)
    return [cls.remote(actor_plan, probe, file_bytes) for _ in range(count)]


def describe(ray, actors: list) -> list[dict]:
    """Each actor's node, backend and batch split, once Ray has placed them all; an actor that could
    not open its runner stops the run with its one line."""
    refs = [actor.describe.remote() for actor in actors]
    started = time.monotonic()
    while True:
        _, waiting = ray.wait(refs, num_returns=len(refs), timeout=NOTE_EVERY_S)
        if not waiting:
            break
        if time.monotonic() - started > RAY_PLACE_TIMEOUT_S:
            raise FocalinferError(f"Ray placed only {len(refs) - len(waiting)} of {len(refs)} actors in "
                                  f"{RAY_PLACE_TIMEOUT_S} s; free the cluster's resources or lower --ray-actors")
        info(f"waiting for Ray to place {len(waiting)} of {len(refs)} actors (another job may hold the resources)")
    try:
        described = ray.get(refs)
    except ray.exceptions.RayError as e:
        raise FocalinferError(f"a Ray actor did not start ({first_line(e)}); is focalinfer {__version__} "
                              "installed on every node?") from None
    for d in described:
        if d["error"]:
            raise FocalinferError(d["error"])
    splits = {(d["batch_size"], d["per_batch"], d["num_outputs"]) for d in described}
    if len(splits) > 1:  # the same model file everywhere cannot disagree; a node with another one can
        raise FocalinferError(f"the actors disagree on the batch (batch, files per batch, outputs): {sorted(splits)}; "
                              "does every node see the same model file?")
    return described


# --- sending batches, writing what comes back ------------------------------------------------


@dataclass
class ActorTally:
    batches: int = 0
    images: int = 0
    busy_s: float = 0.0
    pids: list = field(default_factory=list)       # its processes: a second one means Ray restarted it
    node_ids: list = field(default_factory=list)   # a new node: it restarted elsewhere


@dataclass
class Dispatch:
    """The driver's loop: keep every actor ``RAY_BATCHES_IN_FLIGHT`` batches ahead, write each returned
    batch once (a batch already written is never written again), send the batch of an actor that died
    for good to the others."""

    ray: object
    plan: InferPlan
    actors: list
    described: list[dict]                            # each actor as it started (ray_actor.BatchActor.describe)
    file_bytes: int
    node_path: dict                                  # a file as the plan names it -> its absolute path
    tallies: list = field(default_factory=list)
    times: dict = field(default_factory=dict)       # batch index -> its runs' compute ms
    written: int = 0
    images: int = 0
    seconds: float = 0.0
    bytes_in: int = 0                                # input bytes shipped (--ray-ship-inputs)
    bytes_out: int = 0                               # output file bytes returned
    driver_s: float = 0.0                            # the driver's own time: reading/sending, receiving/writing

    def run(self, pending: list[layout.Batch], progress: bool, on_event) -> "Dispatch":
        """Run ``pending``: each batch goes to an actor with its files' absolute paths, comes back, is written."""
        from focalinfer.progress import progress_bar

        self.tallies = [ActorTally(pids=[d["pid"]], node_ids=[d["node_id"]]) for d in self.described]
        queue, inflight, alive = deque(pending), {}, set(range(len(self.actors)))
        bar = progress_bar(total=len(pending), desc="infer", unit="batch", enabled=progress and bool(pending),
                           file=sys.stderr, leave=False)
        start = time.perf_counter()
        try:
            while queue or inflight:
                busy = time.perf_counter()
                self._send(queue, inflight, alive)
                self.driver_s += time.perf_counter() - busy
                ready, _ = self.ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    index, batch = inflight.pop(ref)
                    busy = time.perf_counter()
                    collected = self._collect(ref, index, batch, queue, alive)
                    self.driver_s += time.perf_counter() - busy
                    if collected:
                        bar.update(1)
                        if on_event:
                            on_event("batch")
        finally:
            bar.close()
        self.seconds = time.perf_counter() - start
        return self

    def _send(self, queue: deque, inflight: dict, alive: set) -> None:
        load = {i: 0 for i in alive}
        for index, _ in inflight.values():
            load[index] = load.get(index, 0) + 1
        for index in sorted(alive, key=load.get):
            while queue and load[index] < RAY_BATCHES_IN_FLIGHT:
                batch = queue.popleft()
                data = layout.read_batch(batch, self.file_bytes) if self.plan.ray_ship_inputs else None
                self.bytes_in += len(data or b"")
                sent = replace(batch, files=tuple(self.node_path[f] for f in batch.files))
                inflight[self.actors[index].run.remote(sent, data)] = (index, batch)
                load[index] += 1

    def _collect(self, ref, index: int, batch: layout.Batch, queue: deque, alive: set) -> bool:
        """Write one returned batch; False when it must be sent again (its actor is gone)."""
        exceptions = self.ray.exceptions
        try:
            result = self.ray.get(ref)
        except exceptions.RayActorError as e:
            if isinstance(e, exceptions.ActorDiedError):
                alive.discard(index)
            if not alive:
                raise FocalinferError(f"every Ray actor died ({first_line(e)}); the finished outputs are kept: "
                                      "rerun the same command to resume") from None
            queue.appendleft(batch)
            return False
        except exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, FocalinferError) else None
            raise FocalinferError(str(cause) if cause else f"a Ray actor failed: {first_line(e)}") from None
        except exceptions.RayError as e:  # an object lost with its node, memory exhausted, …
            raise FocalinferError(f"Ray lost batch {batch.index} ({first_line(e)}); the finished outputs are kept: "
                                  "rerun the same command to resume") from None
        if batch.index in self.times:  # a batch is written once, whatever Ray retried
            return False
        paths = layout.write_output_files(self.plan.output_dir, result["files"])
        self.times[batch.index] = result["times"]
        self.written += sum(len(p) for p in paths)
        self.images += len(batch.files)
        self.bytes_out += sum(len(data) for files in result["files"] for _, data in files)
        self._tally(index, batch, result)
        return True

    def _tally(self, index: int, batch: layout.Batch, result: dict) -> None:
        tally = self.tallies[index]
        tally.batches += 1
        tally.images += len(batch.files)
        tally.busy_s += result["busy_s"]
        if result["pid"] not in tally.pids:
            if tally.pids:
                info(f"Ray actor {index}: restarted (pid {tally.pids[-1]} → {result['pid']}); its batches were retried")
            tally.pids.append(result["pid"])
        if result["node_id"] not in tally.node_ids:
            tally.node_ids.append(result["node_id"])

    def compute_ms(self) -> list[float]:
        """The runs' compute times in batch order, as a local run lists them."""
        return [t for index in sorted(self.times) for t in self.times[index]]


def _rate(images: int, seconds: float) -> float | None:
    return round(images / seconds, 3) if seconds > 0 else None


def ray_section(plan: InferPlan, run: Dispatch) -> dict:
    """Per actor: where it ran, what it decided, its images/s (over its busy time); in total: images/s
    over the driver's wall time, the driver's own ceiling and the bytes that travelled per image."""
    actors = []
    for index, (d, tally) in enumerate(zip(run.described, run.tallies)):
        actors.append({
            "actor": index, "node_ip": d["ip"], "node_id": d["node_id"], "host": d["host"],
            "backend": d["backend"], "micro_batch": d["micro_batch"], "threads": d["threads"], "device": d["device"],
            "visible_devices": d["visible_devices"], "batches": tally.batches, "images": tally.images,
            "busy_s": round(tally.busy_s, 3), "images_per_s": _rate(tally.images, tally.busy_s),
            "pids": tally.pids, "node_ids": tally.node_ids,
        })
    per_image = max(run.images, 1)
    return {
        "address": plan.ray, "ship_inputs": plan.ray_ship_inputs, "actors": actors, "images": run.images,
        "seconds": round(run.seconds, 3), "images_per_s": _rate(run.images, run.seconds),
        # The one writer's ceiling: images over the driver's own time (sending, receiving, writing).
        "driver_busy_s": round(run.driver_s, 3), "driver_images_per_s": _rate(run.images, run.driver_s),
        "input_bytes_per_image": round(run.bytes_in / per_image), "output_bytes_per_image": round(run.bytes_out / per_image),
    }
