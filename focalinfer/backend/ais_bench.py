"""The ais_bench backend for .om models: its InferSession API in-process, or its command line.

API mode (``ais_bench`` importable here) runs batches through :class:`AisBenchRunner` and the
shared output-contract writer, so it resumes and shows progress like onnxruntime. CLI mode runs
``python3 -m ais_bench`` with the documented flags as a subprocess and streams its log; the tool
writes the outputs itself (and redoes every batch on a rerun: it has no resume).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from focalinfer.errors import FocalinferError, ToolMissingError, UsageError
from focalinfer.backend.base import Runner, TensorSpec
from focalinfer.log import info

MODES = ("auto", "api", "cli")
# "uint8" before "int8": the first name found in the text wins.
_DTYPE_NAMES = ("float16", "float32", "float64", "int64", "int32", "uint8", "int8")
_THROUGHPUT_LINE = re.compile(r"throughput 1000\*batchsize\.mean\(([\d.]+)\)/NPU_compute_time\.mean\([^)]*\): ([\d.eE+-]+)")


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
        try:
            from ais_bench.infer.interface import InferSession
        except ImportError as e:
            raise ToolMissingError(
                f"{model_file}: ais_bench is installed but cannot be imported ({e}); source CANN's set_env.sh "
                "(e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh) first"
            ) from None
        self.model_file = Path(model_file)
        self.session = InferSession(device, str(model_file))
        self._input = _tensor_spec(self.single_input(model_file, self.session.get_inputs()))
        self._outputs = [_tensor_spec(o) for o in self.session.get_outputs()]
        self._gear: int | None = None

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        mode = "static"
        if self._input.static_batch is None:  # a dynamic-batch .om: pick the gear, then run it as one
            if batch.shape[0] != self._gear:
                self.session.set_dynamic_batchsize(batch.shape[0])
                self._gear = batch.shape[0]
            mode = "dymbatch"
        return [np.asarray(o) for o in self.session.infer([batch], mode=mode)]

    def device_times_ms(self) -> list[float] | None:
        """The device's own execution times when the session reports them (None: it does not)."""
        try:
            device_ms = list(self.session.sumary().exec_time_list)
        except AttributeError:
            return None
        return [float(t) for t in device_ms] or None

    def reset_times(self) -> None:
        super().reset_times()
        if hasattr(self.session, "reset_sumaryinfo"):
            self.session.reset_sumaryinfo()

    def close(self) -> None:
        if self.session is not None:
            self.session.finalize()
            self.session = None


# --- CLI mode ----------------------------------------------------------------------------


def cli_argv(python: str, model_file: str, input_dir: str | None, output: str, output_dirname: str,
             outfmt: str, batch_size: int | None, device: str, loop: int, warmup: int,
             pure_data_type: str, dym_batch: int | None = None) -> list[str]:
    """``python3 -m ais_bench`` flags as the seed passes them; defaults are left out.

    ``dym_batch``: the gear of a dynamic-batch .om (``--dymBatch``; ais_bench takes it with
    ``--batchsize``, which names the batch in its throughput line).
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
    if loop != 1:
        argv += ["--loop", str(loop)]
    if warmup != 1:
        argv += ["--warmup_count", str(warmup)]
    if input_dir is None and pure_data_type != "zero":
        argv += ["--pure_data_type", pure_data_type]
    return argv


def run_cli(argv: list[str]) -> tuple[float | None, int | None]:
    """Run ais_bench, echo its log as it comes; returns (throughput, batch size) from the log."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    info(" ".join(argv))
    found_throughput = found_batch = None
    last_lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            last_lines = (last_lines + [line.rstrip()])[-5:]
            match = _THROUGHPUT_LINE.search(line)
            if match:
                found_batch, found_throughput = float(match.group(1)), float(match.group(2))
        code = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if code != 0:
        errors = [ln for ln in last_lines if "ERROR" in ln] or last_lines or ["no output"]
        raise FocalinferError(f"ais_bench failed (exit {code}) on {argv[4]}: {errors[-1]} (full log above)")
    batch = int(found_batch) if found_batch is not None and found_batch == int(found_batch) else None
    return found_throughput, batch
