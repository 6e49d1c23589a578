"""The ais_bench backend for .om models: its InferSession API in-process, or its command line.

API mode (``ais_bench`` importable here) runs batches through :class:`AisBenchRunner` and the
shared output-contract writer, so it resumes and shows progress like onnxruntime. CLI mode runs
``python3 -m ais_bench`` with the documented flags as a subprocess and streams its log; the tool
writes the outputs itself (and redoes every batch on a rerun: it has no resume).

Two generations are installed in the field (docs/contract.md, "Generations"): 2023 (Ascend's tools
repository) and 2024 (ait; what msit's ``benchmark`` installs). :func:`resolve` finds out once which
one this run has (its ``--help`` lists ``--divide_input``; its session has ``summary()``), and the
differences live here: ``--divide_input true`` for several devices, the ``device<D>_<i>`` folders,
the device times as (start, end) pairs, and the 2024 path rules (:func:`check_paths_for`).
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focalinfer import layout
from focalinfer.errors import FocalinferError, ToolMissingError, UsageError
from focalinfer.backend.base import Runner, TensorSpec
from focalinfer.log import info, warning

MODES = ("auto", "api", "cli")
# "uint8" before "int8": the first name found in the text wins.
_DTYPE_NAMES = ("float16", "float32", "float64", "int64", "int32", "uint8", "int8")
_THROUGHPUT_LINE = re.compile(r"throughput 1000\*batchsize\.mean\(([\d.]+)\)/NPU_compute_time\.mean\([^)]*\): ([\d.eE+-]+)")
# With several devices ais_bench ends its log with the devices' total (each device's own line comes before).
_TOTAL_THROUGHPUT_LINE = re.compile(r"summary throughput:\s*([\d.eE+-]+)")
GENERATIONS = ("2023", "2024")
# What `doctor` says each generation means for a run (docs/contract.md, "Generations").
GENERATION_NOTES = {
    "2023": "Ascend tools repository: inputs split over devices into device<D>/, session sumary()",
    "2024": "ait / msit benchmark: --divide_input true passed, device<D>_<i>/ folders, session summary() "
            "with (start, end) times, paths checked first",
}
# Only the 2024 generation has it: without it every device runs the whole input set.
DIVIDE_INPUT_FLAG = "--divide_input"


def api_available() -> bool:
    return importlib.util.find_spec("ais_bench") is not None


def _has_ais_bench(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('ais_bench') else 1)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_cli_python() -> str | None:
    """This interpreter or ``python3`` on PATH, whichever can run ``-m ais_bench``."""
    candidates = [sys.executable, shutil.which("python3")]
    for python in dict.fromkeys(c for c in candidates if c):
        if _has_ais_bench(python):
            return python
    return None


def missing_error(om_path: str | Path, source_onnx: str | None = None) -> ToolMissingError:
    onnx = source_onnx or "<the model>.onnx"
    return ToolMissingError(
        f"{om_path}: running an .om needs ais_bench (with CANN and an NPU), which is not installed here; "
        f"run the ONNX on CPU instead: --model-file {onnx} --backend onnxruntime"
    )


def _session_class(model_file: str | Path):
    try:
        from ais_bench.infer.interface import InferSession
    except ImportError as e:
        raise ToolMissingError(
            f"{model_file}: ais_bench is installed but cannot be imported ({e}); source CANN's set_env.sh "
            "(e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh) first"
        ) from None
    return InferSession


def choose_mode(om_path: str | Path, mode: str, source_onnx: str | None = None) -> tuple[str, str | None]:
    """('api', None) or ('cli', python) for this machine, or a one-line ToolMissingError naming
    ``source_onnx`` (the ONNX the .om was built from) as the CPU alternative."""
    if mode not in MODES:
        raise UsageError(f"unknown ais_bench mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode in ("auto", "api") and api_available():
        return "api", None
    if mode == "api":
        raise missing_error(om_path, source_onnx)
    python = find_cli_python()
    if python is None:
        raise missing_error(om_path, source_onnx)
    return "cli", python


# --- which generation, once per run --------------------------------------------------------

_generations: dict[str, str] = {}  # python executable ("api:" + this one for the API) -> generation


def forget_generations() -> None:
    """Detect again (tests swap the installed generation between runs of one process)."""
    _generations.clear()


def session_generation(session_class) -> str:
    """2024 renamed the session's ``sumary()`` / ``reset_sumaryinfo()`` to ``summary()`` / ``reset_summaryinfo()``."""
    return "2024" if hasattr(session_class, "summary") else "2023"


def api_generation(model_file: str | Path = "the .om") -> str:
    key = "api:" + sys.executable
    if key not in _generations:
        _generations[key] = session_generation(_session_class(model_file))
    return _generations[key]


def help_generation(help_text: str) -> str:
    return "2024" if DIVIDE_INPUT_FLAG in help_text else "2023"


def cli_generation(python: str) -> str:
    """The generation ``python -m ais_bench`` is, from its ``--help``; asked once per interpreter."""
    if python not in _generations:
        argv = [python, "-m", "ais_bench", "--help"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ToolMissingError(f"{' '.join(argv)} did not run ({e}); check the ais_bench install") from None
        if proc.returncode != 0:  # installed, but it does not start: say why, not "not installed"
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise FocalinferError(
                f"{' '.join(argv)} failed (exit {proc.returncode}): {last}; source CANN's set_env.sh "
                "(e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh) first"
            )
        _generations[python] = help_generation(proc.stdout)
    return _generations[python]


@dataclass(frozen=True)
class AisBenchSetup:
    """How this run drives ais_bench: 'api' or 'cli' (with the interpreter), and its generation."""

    mode: str
    python: str | None
    generation: str

    def check_paths(self, model_file, input_dir=None, output=None, output_dirname=None) -> None:
        """The paths this mode hands ais_bench, against its generation's rules (the API sees the model only)."""
        if self.mode == "api":
            check_paths_for(self.generation, model=model_file)
        else:
            check_paths_for(self.generation, model=model_file, input_dir=input_dir, output=output,
                            output_dirname=output_dirname)


def device_dir_names(generation: str | None, devices: list[int]) -> list[str]:
    """The folders a multi-device CLI run of ``generation`` writes (none for one device)."""
    if len(devices) < 2:
        return []
    return layout.device_dir_names(devices, indexed=generation == "2024")


def resolve(om_path: str | Path, mode: str, source_onnx: str | None = None) -> AisBenchSetup:
    """The mode (:func:`choose_mode`) and the installed generation, found once for the run."""
    mode, python = choose_mode(om_path, mode, source_onnx)
    generation = api_generation(om_path) if mode == "api" else cli_generation(python)
    return AisBenchSetup(mode, python, generation)


# --- the 2024 generation's path rules -------------------------------------------------------

# path_security_check.py: a path may hold only these characters, may not be a symbolic link, and a
# path it reads may not be group- or other-writable; --output_dirname may not be absolute.
_REFUSED_CHARS = re.compile(r"[^_A-Za-z0-9/.-]")
_WHO = "ais_bench (2024 generation, ait/msit) refuses"


def _path_problem(path: str, read: bool) -> str | None:
    """Why the 2024 generation would refuse ``path`` (rule, then fix), or None."""
    bad = sorted(set(_REFUSED_CHARS.findall(path)))
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (f"a path with {shown} (only letters, digits and _ - . / are allowed); move or copy it to a path "
                "without spaces, '+' or non-ASCII characters")
    if os.path.islink(path.rstrip("/") or "/"):
        return f"a symbolic link; pass the real path ({os.path.realpath(path)})"
    if read and os.path.exists(path) and os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        return f"an input that group or others may write (mode {mode:o}); run chmod go-w {path}"
    return None


def check_paths_for(generation: str, *, model, input_dir=None, output=None, output_dirname=None) -> None:
    """Stop, in one line naming the path, the rule and the fix, on a path ``generation`` would refuse.

    The 2023 generation takes any path. Called before anything starts or is written.
    """
    if generation != "2024":
        return
    for what, path, read in (("model", model, True), ("input folder", input_dir, True), ("output folder", output, False)):
        if path is None:
            continue
        problem = _path_problem(os.fspath(path), read)
        if problem:
            raise FocalinferError(f"{os.fspath(path)}: {_WHO} this {what}: {problem}")
    if output_dirname is not None:
        dirname = os.fspath(output_dirname)
        problem = _path_problem(dirname, read=False)
        if os.path.isabs(dirname):
            problem = "an absolute result folder name; give a name, and its parent with --output"
        if problem:
            raise FocalinferError(f"{dirname}: {_WHO} this result folder name: {problem}")


# --- API mode ----------------------------------------------------------------------------


def _numpy_dtype(desc) -> np.dtype:
    # aclruntime describes types with its own enum; its name carries the numpy type name.
    text = str(getattr(desc, "datatype", getattr(desc, "dtype", "float32"))).lower()
    for name in _DTYPE_NAMES:
        if name in text:
            return np.dtype(name)
    return np.dtype(np.float32)


def _tensor_spec(desc) -> TensorSpec:
    shape = tuple(int(d) if int(d) > 0 else None for d in desc.shape)
    return TensorSpec(desc.name, shape, _numpy_dtype(desc))


class AisBenchRunner(Runner):
    """An .om through ``ais_bench.infer.interface.InferSession``; times from its own summary."""

    backend = "ais_bench"

    def __init__(self, model_file: str | Path, device: int = 0):
        InferSession = _session_class(model_file)
        self.model_file = Path(model_file)
        self.generation = session_generation(InferSession)
        check_paths_for(self.generation, model=model_file)  # the 2024 session refuses it less clearly
        self.session = InferSession(device, str(model_file))
        self._input = _tensor_spec(self.single_input(model_file, self.session.get_inputs()))
        self._outputs = [_tensor_spec(o) for o in self.session.get_outputs()]
        self._gear: int | None = None
        self._said_wall_time = False

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        mode = "static"
        if self._input.static_batch is None:  # a dynamic-batch .om: pick the gear, then run it as one
            if batch.shape[0] != self._gear:
                self.session.set_dynamic_batchsize(batch.shape[0])
                self._gear = batch.shape[0]
            mode = "dymbatch"
        return [np.asarray(o) for o in self.session.infer([batch], mode=mode)]

    def device_times_ms(self) -> list[float] | None:
        """The device's own execution times; None (said once, as a warning) when the session reports
        none, so the base class's wall time around each call stands in, labelled as such."""
        device_ms = device_times_ms(self.session) if self.session is not None else None
        if device_ms:
            return device_ms
        if self.wall_times_ms and not self._said_wall_time:
            self._said_wall_time = True
            warning(f"{self.model_file}: the ais_bench session reports no device times "
                    f"({'no summary()/sumary()' if device_ms is None else 'an empty exec_time_list'}); the timings "
                    "and throughput of this run are wall time around each call, host and copies included")
        return None

    def reset_times(self) -> None:
        super().reset_times()
        reset = getattr(self.session, "reset_summaryinfo", None) or getattr(self.session, "reset_sumaryinfo", None)
        if reset is not None:
            reset()

    def close(self) -> None:
        if self.session is not None:
            self.session.finalize()
            self.session = None


def device_times_ms(session) -> list[float] | None:
    """The times (ms) the session's device reports, in either generation's form: 2023's
    ``sumary().exec_time_list`` of durations, 2024's ``summary().exec_time_list`` of (start, end)
    pairs. None when the session has no summary at all."""
    report = getattr(session, "summary", None) or getattr(session, "sumary", None)
    if report is None:
        return None
    return [_duration_ms(entry) for entry in report().exec_time_list]


def _duration_ms(entry) -> float:
    if isinstance(entry, numbers.Real):
        return float(entry)
    start, end = entry
    return float(end) - float(start)


# --- CLI mode ----------------------------------------------------------------------------


def cli_argv(python: str, model_file: str, input_dir: str | None, output: str, output_dirname: str,
             outfmt: str, batch_size: int | None, device: str, loop: int, warmup: int,
             pure_data_type: str, dym_batch: int | None = None, generation: str = "2023") -> list[str]:
    """``python3 -m ais_bench`` flags as the seed passes them; defaults are left out.

    ``dym_batch``: the gear of a dynamic-batch .om (``--dymBatch``; ais_bench takes it with
    ``--batchsize``, which names the batch in its throughput line). ``generation`` 2024 with
    several devices adds ``--divide_input true``: without it every device runs every input.
    """
    argv = [python, "-m", "ais_bench", "--model", model_file]
    if input_dir is not None:
        argv += ["--input", input_dir]
    argv += ["--output", output, "--output_dirname", output_dirname, "--outfmt", outfmt]
    if batch_size is not None:
        argv += ["--batchsize", str(batch_size)]
    if dym_batch is not None:
        argv += ["--dymBatch", str(dym_batch)]
    if device != "0":
        argv += ["--device", device]
    if generation == "2024" and "," in device:
        argv += [DIVIDE_INPUT_FLAG, "true"]
    if loop != 1:
        argv += ["--loop", str(loop)]
    if warmup != 1:
        argv += ["--warmup_count", str(warmup)]
    if input_dir is None and pure_data_type != "zero":
        argv += ["--pure_data_type", pure_data_type]
    return argv


class LogReader:
    """What focalinfer takes from ais_bench's log: the batch and throughput of its ``[INFO]
    throughput`` line and, with several devices, the ``summary throughput:`` total, which wins."""

    def __init__(self):
        self.batch: float | None = None
        self.device_throughput: float | None = None  # the last device's line
        self.total: float | None = None

    def feed(self, line: str) -> None:
        match = _THROUGHPUT_LINE.search(line)
        if match:
            self.batch, self.device_throughput = float(match.group(1)), float(match.group(2))
        total = _TOTAL_THROUGHPUT_LINE.search(line)
        if total:
            self.total = float(total.group(1))

    @property
    def throughput(self) -> float | None:
        return self.total if self.total is not None else self.device_throughput


def run_cli(argv: list[str]) -> tuple[float | None, int | None]:
    """Run ais_bench, echo its log as it comes; returns (throughput, batch size) from the log
    (the devices' total with several)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    info(" ".join(argv))
    log = LogReader()
    last_lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            last_lines = (last_lines + [line.rstrip()])[-5:]
            log.feed(line)
        code = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if code != 0:
        errors = [ln for ln in last_lines if "ERROR" in ln] or last_lines or ["no output"]
        raise FocalinferError(f"ais_bench failed (exit {code}) on {argv[4]}: {errors[-1]} (full log above)")
    batch = int(log.batch) if log.batch is not None and log.batch == int(log.batch) else None
    return log.throughput, batch
