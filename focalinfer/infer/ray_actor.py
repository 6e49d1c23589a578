"""The worker side of a Ray run (``infer.ray_exec`` is the driver): what runs on the cluster's nodes.

Ray workers import this module by name, so focalinfer must be installed on every node. Nothing here
imports Ray or writes a file: :class:`BatchActor` holds one runner of the backend layer, opened
once, and returns each batch's output files as bytes (``layout.batch_output_bytes``) for the
driver, the one writer. It takes the plan as plain data (``InferPlan.as_dict``) and small numbers,
never arrays (ray#53727): a restarted actor is rebuilt from these same arguments.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import replace

from focalinfer import __version__, layout
from focalinfer.backend import decide_backend, open_spec
from focalinfer.errors import FocalinferError, first_line
from focalinfer.infer.engine import infer_batch, make_reader, resolve_batch_size, warm_up
from focalinfer.infer.plan import InferPlan

# What Ray sets in an actor that asked for {"NPU": n}: the devices it may use, renumbered from 0.
VISIBLE_NPUS = "ASCEND_RT_VISIBLE_DEVICES"


def node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside a Ray worker (a unit test of this module)
        return socket.gethostname()


def node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def _readable_problem(path: str, what: str, size: int | None = None) -> str | None:
    """Why ``path`` cannot serve as the driver's ``what`` on this node, or None."""
    if not os.path.exists(path):
        return f"{path}: the {what} is not there on this node"
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError as e:
        return f"{path}: the {what} cannot be read on this node ({e.strerror or e})"
    if size is not None and os.path.getsize(path) != size:
        return f"{path}: the {what} here holds {os.path.getsize(path)} bytes, the driver's {size}: not the same file"
    return None


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_node(probe: dict) -> dict:
    """This node's view of a run's files (``ray_exec.node_probe`` says which and their sizes): the
    first problem found, or None, with the node's identity. The preflight task on every node runs it,
    and so does every actor before it opens anything."""
    problem = _readable_problem(probe["model_file"], "model file", probe["model_bytes"])
    if problem is None and probe.get("input_dir"):
        problem = (_readable_problem(probe["input_dir"], "input folder")
                   or _readable_problem(probe["first_file"], "first input file", probe["first_file_bytes"]))
        manifest = probe.get("manifest")
        if problem is None and manifest:
            problem = _readable_problem(manifest, "input manifest")
            if problem is None and _sha256(manifest) != probe["manifest_sha256"]:
                problem = f"{manifest}: this node's manifest differs from the driver's: not the same input folder"
    if problem is None and probe.get("version") != __version__:
        problem = f"focalinfer {__version__} is installed on this node, the driver runs {probe.get('version')}"
    return {"node_id": node_id(), "ip": node_ip(), "host": socket.gethostname(), "problem": problem}


def node_label(view: dict) -> str:
    """How a node is named in messages: its IP and the start of its Ray node id."""
    return f"node {view['ip']} ({(view.get('node_id') or '?')[:12]})"


class BatchActor:
    """One runner on one node (an NPU's, or ``threads`` CPUs'), opened once; it runs the batches the
    driver sends and returns their outputs' bytes. A problem while opening is kept and reported by
    :meth:`describe` as one line naming the node, not raised (Ray would retry the constructor)."""

    def __init__(self, plan: dict, probe: dict, file_bytes: int):
        self.error = self.runner = None
        self.view = check_node(probe)
        try:
            if self.view["problem"]:
                raise FocalinferError(self.view["problem"])
            self._open(InferPlan.from_dict(plan), file_bytes)
        except FocalinferError as e:
            self.error = f"{node_label(self.view)}: {e}"
        except Exception as e:  # an unexpected failure still reaches the driver as one line
            self.error = f"{node_label(self.view)}: {first_line(e, with_type=True)}"

    def _open(self, plan: InferPlan, file_bytes: int) -> None:
        # 'auto' is decided here, on this node's CPU; explicit backends are checked here (installed?).
        choice = decide_backend(plan.model.path, plan.backend, batch_size=plan.batch_size,
                                threads=plan.runner.threads, graph_sha256=plan.model.sha256)
        self.spec = replace(plan.runner, backend=choice.backend, micro_batch=choice.micro_batch)
        self.runner = open_spec(self.spec)
        spec = self.runner.input_spec()
        self.batch_size = resolve_batch_size(spec, plan.batch_size, plan.model.path)
        self.reader = make_reader(plan, spec, self.runner.backend, self.batch_size)
        self.per_batch = self.reader.files_per_batch(file_bytes, plan.files[0])
        self.num_outputs = len(self.runner.output_specs())
        self.plan, self.file_bytes, self.warm = plan, file_bytes, False

    def describe(self) -> dict:
        """What the driver needs (the batch split, the output count) and records (node, backend)."""
        described = {**self.view, "pid": os.getpid(), "error": self.error,
                     "visible_devices": os.environ.get(VISIBLE_NPUS)}
        if self.error is None:
            described.update(backend=self.spec.backend, micro_batch=self.spec.micro_batch,
                             threads=self.spec.threads, device=self.spec.device, batch_size=self.batch_size,
                             per_batch=self.per_batch, num_outputs=self.num_outputs)
        return described

    def run(self, batch: layout.Batch, data: bytes | None = None) -> dict:
        """One batch (its files read here, or ``data``: their bytes from the driver): the output files
        as (name, bytes) per real input, the runner's times, this process's id and busy seconds."""
        if self.error is not None:
            raise FocalinferError(self.error)
        try:
            if not self.warm:  # each (re)started actor warms up once, untimed, as a local run does
                warm_up(self.runner, self.reader, batch, self.file_bytes, self.plan.warmup, data)
                self.warm = True
            start = time.perf_counter()
            self.runner.reset_times()
            outputs = infer_batch(self.runner, self.reader, batch, self.file_bytes, self.plan.loop, data)
            files = layout.batch_output_bytes(batch, outputs, self.plan.outfmt)
            busy = time.perf_counter() - start
        except FocalinferError as e:
            raise FocalinferError(f"{node_label(self.view)}: {e}") from None
        except OSError as e:
            raise FocalinferError(f"{node_label(self.view)}: {e.filename or 'an input'}: {e.strerror or e}") from None
        return {"index": batch.index, "files": files, "times": self.runner.compute_times_ms, "busy_s": busy,
                "pid": os.getpid(), "node_id": self.view["node_id"]}
