"""One resolved, frozen plan per inference run, built once at infer's entrance.

Everything a run needs is decided here, each fact once: the model file's identity
(``records.identify_model``), the backend (``auto`` resolved, the micro-batch it measured, the
ais_bench mode), the input set and what its files hold, the batch size or gear, the output folder
and format. The engine, the device processes and the infer record all take the plan; nothing after
it re-checks or re-reads. It is plain data (:meth:`InferPlan.as_dict` / :meth:`InferPlan.from_dict`),
so it can be shipped to another process or host.

Under Ray (``ray`` set) the nodes decide what only they can know: ``auto`` for an .onnx stays
``auto`` in the plan and each actor decides it on its node (``infer.ray_actor``); an .om runs
through ais_bench's API in every NPU actor, whatever this machine has.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from focalinfer import __version__, layout
from focalinfer.backend import RunnerSpec, check_backend, decide_backend
from focalinfer.backend.ais_bench import resolve as resolve_ais_bench
from focalinfer.backend.auto import Choice
from focalinfer.defaults import WORK_DIR
from focalinfer.errors import FocalinferError, UsageError
from focalinfer.infer.checks import InputFiles, check_om_inputs, dynamic_batch_gear, input_files_of
from focalinfer.infer.provenance import InputSet, check_transform, read_input_set
from focalinfer.inputs import FLOAT32, Normalization
from focalinfer.log import info
from focalinfer.records import AtcRecord, InferRecord, ModelIdentity, identify_model
from focalinfer.util import ensure_writable_dir

PURE_DATA_TYPES = ("zero", "random")
AIS_BENCH_MODES = ("auto", "api", "cli")


@dataclass(frozen=True)
class InferPlan:
    """A resolved inference run (see the module doc). ``files`` is None for pure inference."""

    model: ModelIdentity
    runner: RunnerSpec                   # the resolved backend and how to open it
    devices: tuple[int, ...]
    output: str
    dirname: str
    outfmt: str
    batch_size: int | None               # as asked (None: the model's static batch)
    files: tuple[str, ...] | None
    input_dir: str | None = None
    input_files: InputFiles = InputFiles(FLOAT32, None, None)
    manifest_sha256: str | None = None
    inputs_sha256: str | None = None
    preset: str | None = None
    ais_bench_mode: str | None = None     # api | cli (ais_bench only)
    ais_bench_python: str | None = None   # the interpreter that runs `-m ais_bench` (cli mode)
    ais_bench_generation: str | None = None  # 2023 | 2024 (docs/contract.md, "Generations")
    gear: int | None = None               # a dynamic-batch .om's gear
    loop: int = 1
    warmup: int = 1
    pure_data_type: str = "zero"
    args: tuple[str, ...] = field(default_factory=tuple)
    tool_version: str = __version__
    ray: str | None = None                # a Ray cluster's address ('local': started here); None: no Ray
    ray_actors: int | None = None         # Ray actors (None: one per NPU for .om, one per --threads CPUs for .onnx)
    ray_ship_inputs: bool = False         # the driver reads the inputs and ships them through Ray's object store

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def output_dir(self) -> str:
        return os.path.join(self.output, self.dirname)

    def for_device(self, device: int, files: list[str] | None, dirname: str, threads: int | None) -> "InferPlan":
        """The share of one device process: its files, its folder inside the result folder."""
        runner = replace(self.runner, device=device, threads=threads)
        return replace(self, runner=runner, devices=(device,), files=None if files is None else tuple(files),
                       dirname=dirname)

    def record(self) -> InferRecord:
        """The infer record this run claims its folder with (finished by the run's counts)."""
        return InferRecord(
            model_file=self.model.path, model_sha256=self.model.sha256 or "", backend=self.backend,
            model=self.model.name, batch_size=self.batch_size, outfmt=self.outfmt, input_dir=self.input_dir,
            manifest_sha256=self.manifest_sha256, inputs_sha256=self.inputs_sha256, preset=self.preset,
            dtype=self.input_files.dtype if self.files is not None else None, tool_version=self.tool_version,
            precision=self.runner.precision, micro_batch=self.runner.micro_batch, plan=self.as_dict(),
            ais_bench_generation=self.ais_bench_generation,
        )

    def as_dict(self) -> dict:
        """Plain JSON data (lists, not tuples): what the infer record stores and workers receive."""
        data = asdict(self)
        norm = self.input_files.normalization
        data["input_files"]["normalization"] = norm.as_dict() if norm else None
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: dict) -> "InferPlan":
        data = dict(data)
        files = data["input_files"]
        norm = files.get("normalization")
        data["input_files"] = InputFiles(files["dtype"], Normalization.from_dict(norm, "the plan") if norm else None,
                                         files.get("manifest"))
        data["model"] = ModelIdentity.from_dict(data["model"])
        data["runner"] = RunnerSpec(**data["runner"])
        for name in ("devices", "files", "args"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


def parse_devices(device: str | int) -> list[int]:
    try:
        ids = [int(part) for part in str(device).split(",")]
    except ValueError:
        raise UsageError(f"--device {device!r}: give a device id or a comma list such as 0,1") from None
    if any(not 0 <= i <= 255 for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--device {device!r}: ids must be distinct and within 0–255")
    return ids


def _check_flags(outfmt: str, loop: int, warmup: int, pure_data_type: str, ais_bench_mode: str) -> str:
    outfmt = str(outfmt).upper()
    if outfmt not in layout.OUTFMTS:
        raise UsageError(f"--outfmt {outfmt}: choose one of {', '.join(layout.OUTFMTS)}")
    if loop < 1 or warmup < 0:
        raise UsageError("--loop must be at least 1 and --warmup at least 0")
    if pure_data_type not in PURE_DATA_TYPES:
        raise UsageError(f"pure data type {pure_data_type!r}: choose zero or random")
    if ais_bench_mode not in AIS_BENCH_MODES:
        raise UsageError(f"unknown ais_bench mode {ais_bench_mode!r}; choose one of: {', '.join(AIS_BENCH_MODES)}")
    return outfmt


def _input_set(input_dir, identity: ModelIdentity, allow_transform_mismatch: bool) -> tuple[InputSet, InputFiles]:
    inputs = read_input_set(input_dir)
    check_transform(inputs, identity, allow_transform_mismatch)
    if inputs.extra:
        info(f"{len(inputs.extra)} input files in {input_dir} are not in its manifest and were left out "
             f"(first: {os.path.basename(inputs.extra[0])})")
    return inputs, input_files_of(inputs.manifest, input_dir)


def _ais_bench_settings(identity: ModelIdentity, files: InputFiles | None, input_dir, batch_size: int | None,
                        mode: str, output: str, dirname: str, on_ray: bool) -> dict:
    """How this .om runs: the gear, ais_bench's mode and generation (found once); the inputs' dtype
    and every path the generation would refuse are checked here, before anything is written. Under
    Ray, ais_bench runs in the NPU actors (its API, which checks its model path there), not here."""
    atc: AtcRecord | None = identity.atc
    if files is not None:
        check_om_inputs(identity.path, files, input_dir, atc)
    gear = dynamic_batch_gear(identity.path, atc, batch_size)
    if on_ray:
        return {"gear": gear, "ais_bench_mode": "api", "ais_bench_python": None}
    ais = resolve_ais_bench(identity.path, mode, identity.source_onnx)
    ais.check_paths(identity.path, input_dir, output, dirname)
    return {"gear": gear, "ais_bench_mode": ais.mode, "ais_bench_python": ais.python,
            "ais_bench_generation": ais.generation}


def _check_ray(ray: str | None, ray_actors: int | None, ship_inputs: bool, input_dir, devices: list[int],
               precision: str, ais_bench_mode: str) -> None:
    """The flags that go with --ray, and those that do not."""
    if ray is None:
        if ray_actors is not None or ship_inputs:
            raise UsageError("--ray-actors and --ray-ship-inputs apply to a Ray run; add --ray [ADDRESS]")
        return
    if input_dir is None:
        raise UsageError("--ray splits input files over actors; pass --input (pure inference runs on one machine)")
    if devices != [0]:
        raise UsageError("--device does not apply with --ray: Ray gives each actor its NPU; set --ray-actors")
    if precision != "fp32":
        raise UsageError(f"--precision {precision} does not run with --ray (its fp32 agreement check runs in one "
                         "process); run it without --ray")
    if ais_bench_mode == "cli":
        raise UsageError("--ais-bench-mode cli does not apply with --ray: each NPU actor runs ais_bench's API")
    if ray_actors is not None and ray_actors < 1:
        raise UsageError(f"--ray-actors {ray_actors}: give at least 1")


def _decide(model_file: str, backend: str, on_ray: bool, **settings):
    """The backend, decided here; under Ray an .onnx's 'auto' is left to each actor's node."""
    if on_ray:
        return Choice("ais_bench" if model_file.lower().endswith(".om") else backend)
    return decide_backend(model_file, backend, **settings)


def plan_inference(
    model_file, input_dir=None, *, output=WORK_DIR + "/", output_dirname=None, outfmt="TXT", batch_size=None,
    backend="auto", device="0", loop=1, warmup=1, threads=None, pure_data_type="zero", ais_bench_mode="auto",
    allow_transform_mismatch=False, precision="fp32", args=None, identity: ModelIdentity | None = None,
    check_inputs: Callable[[list[str]], None] | None = None, ray=None, ray_actors=None, ray_ship_inputs=False,
) -> InferPlan:
    """Check every flag and input and resolve the backend, once; nothing is written but the
    ``--output`` folder's write probe. See ``run_inference`` for the meaning of the arguments;
    ``identity``: the model file's, when the caller has derived it already; ``check_inputs``: the
    caller's check of the input files, run before the backend is decided (auto measures)."""
    model_file = os.fspath(model_file)
    check_backend(model_file, backend)
    outfmt = _check_flags(outfmt, loop, warmup, pure_data_type, ais_bench_mode)
    if not os.path.isfile(model_file):
        raise FocalinferError(f"{model_file}: model file not found; check the path (or run export / om first)")
    devices = parse_devices(device)
    _check_ray(ray, ray_actors, ray_ship_inputs, input_dir, devices, precision, ais_bench_mode)
    identity = identity or identify_model(model_file)
    inputs = files = None
    if input_dir is not None:
        inputs, files = _input_set(input_dir, identity, allow_transform_mismatch)
        if check_inputs is not None:
            check_inputs(inputs.files)
    output = os.fspath(output)
    dirname = output_dirname or layout.timestamp_dirname()
    choice = _decide(model_file, backend, ray is not None, batch_size=batch_size, threads=threads,
                     precision=precision, graph_sha256=identity.sha256)
    extra = {}
    if choice.backend == "ais_bench":
        extra = _ais_bench_settings(identity, files, input_dir, batch_size, ais_bench_mode, output, dirname,
                                    ray is not None)
    ensure_writable_dir(output, "--output folder")
    manifest = inputs.manifest if inputs else None
    return InferPlan(
        model=identity,
        runner=RunnerSpec(choice.backend, model_file, devices[0], threads, precision, choice.micro_batch),
        devices=tuple(devices), output=output, dirname=dirname,
        outfmt=outfmt, batch_size=batch_size, files=tuple(inputs.files) if inputs else None,
        input_dir=None if input_dir is None else os.fspath(input_dir),
        input_files=files or InputFiles(FLOAT32, None, None),
        manifest_sha256=inputs.manifest_sha256 if inputs else None,
        inputs_sha256=inputs.fingerprint if inputs else None, preset=manifest.preset if manifest else None,
        loop=loop, warmup=warmup, pure_data_type=pure_data_type,
        args=tuple(sys.argv if args is None else args), ray=ray, ray_actors=ray_actors,
        ray_ship_inputs=bool(ray_ship_inputs), **extra,
    )
