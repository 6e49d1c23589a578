"""The ais_bench file contract, in one place: infer writes through it, postprocess reads through it.

The facts are in docs/contract.md.

Inputs: the .bin/.npy files of a directory, natural-sorted; consecutive files fill one batch
(files per batch = input tensor bytes / first file's bytes); the last batch is padded with its
own first file and the padding's outputs are not written. Outputs: one file per sample and per
model output, ``<input name up to the first '.'>_<output index>.<fmt>``; a summary JSON beside
the output directory (its name: :data:`SUMMARY_SUFFIX`, :func:`summary_path`, :func:`summary_beside`);
two ``[INFO]`` lines in the log. Several devices write one folder each, ``device<D>`` or (the 2024
generation) ``device<D>_<i>`` (:func:`device_dirs` reads both); pure inference writes
``pure_infer_data_<i>.<fmt>``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from focalinfer.errors import FocalinferError
from focalinfer.util import remove_atomic_temps, write_bytes_atomic

INPUT_SUFFIXES = (".bin", ".BIN", ".npy", ".NPY")
OUTFMTS = ("TXT", "NPY", "BIN")
PERCENTILE = 99
# Output files this contract writes: used to recognise a result directory's contents.
OUTPUT_NAME = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)\.(?P<ext>txt|npy|bin)$", re.IGNORECASE)
# ais_bench --device 0,1 writes one folder per device into <dirname>: device<D>/ (2023 generation) or
# device<D>_<i>/ (2024, i = the device's position in the --device list). Both are read alike.
DEVICE_DIR = re.compile(r"^device(?P<device>\d+)(?:_(?P<index>\d+))?$")
# The summary ais_bench writes beside a result folder: <folder><SUMMARY_SUFFIX>.
SUMMARY_SUFFIX = "_summary.json"
# Older ais_bench releases wrote the summary inside the result folder under this name.
OLD_SUMMARY_NAME = "sumary.json"
# Pure inference (no --input) with --output writes each output of the last run, whole, as
# <PURE_STEM>_<output index>.<fmt> into the result folder.
PURE_STEM = "pure_infer_data"


def natural_key(text: str) -> list:
    """Digit runs compare as numbers, the rest case-insensitively (ais_bench's natural_sort)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def natural_sorted(paths: Sequence[str]) -> list[str]:
    return sorted(paths, key=natural_key)


def list_input_files(input_dir: str | os.PathLike) -> list[str]:
    """The directory's .bin/.npy files as ais_bench orders them, or a one-line error."""
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        what = "is not a directory" if os.path.exists(input_dir) else "does not exist"
        raise FocalinferError(
            f"{input_dir}: input directory {what}; pass the folder of .bin files that preprocess wrote"
        )
    names = [n for n in os.listdir(input_dir) if n.endswith(INPUT_SUFFIXES)]
    if not names:
        raise FocalinferError(
            f"{input_dir}: no .bin or .npy files in the input directory; run `focalinfer preprocess` first"
        )
    return natural_sorted([os.path.join(input_dir, n) for n in names])


def file_data_bytes(path: str) -> int:
    """Bytes of tensor data in one input file (an .npy counts its array, not its header)."""
    if path.lower().endswith(".npy"):
        return np.load(path, mmap_mode="r").nbytes
    return os.path.getsize(path)


def name_stem(name: str) -> str:
    """The key an output is named by: the basename up to its first '.' (ais_bench's rule).

    ``n01/ILSVRC2012_val_00000001.JPEG`` → ``ILSVRC2012_val_00000001``; label lines, input files
    and output files are joined by it.
    """
    return name.replace("\\", "/").rsplit("/", 1)[-1].partition(".")[0]


def output_stem(input_path: str) -> str:
    return name_stem(os.fspath(input_path))


def output_name(input_path: str, output_index: int, outfmt: str) -> str:
    return f"{output_stem(input_path)}_{output_index}.{outfmt.lower()}"


def check_unique_stems(files: Sequence[str]) -> None:
    """Two inputs whose names agree up to the first '.' would overwrite each other's outputs."""
    seen: dict[str, str] = {}
    for path in files:
        stem = output_stem(path)
        if stem in seen:
            raise FocalinferError(
                f"{path}: its outputs would overwrite those of {seen[stem]} (both are named {stem}_<i> "
                "because output names stop at the first '.'); rename one (preprocess --rename does this)"
            )
        seen[stem] = path


@dataclass(frozen=True)
class Batch:
    """One model run: ``files`` holds the real inputs; ``padding`` slots repeat files[0]."""

    index: int
    files: tuple[str, ...]
    padding: int

    @property
    def slots(self) -> int:
        return len(self.files) + self.padding


def files_per_batch(tensor_bytes: int, file_bytes: int, first_file: str, batch_size: int) -> int:
    if file_bytes <= 0 or tensor_bytes % file_bytes:
        raise FocalinferError(
            f"{first_file}: {file_bytes} bytes does not divide the model input of {tensor_bytes} bytes "
            f"(batch {batch_size}); the .bin files were made for another model, input size or batch"
        )
    return tensor_bytes // file_bytes


def plan_batches(files: Sequence[str], per_batch: int) -> list[Batch]:
    runs = math.ceil(len(files) / per_batch)
    batches = []
    for i in range(runs):
        chunk = tuple(files[i * per_batch:(i + 1) * per_batch])
        batches.append(Batch(i, chunk, per_batch - len(chunk)))
    return batches


def check_file_sizes(files: list[str], expected: int) -> None:
    """Every input must hold as many bytes as the first (the batch arithmetic assumes it)."""
    for path in files:
        size = file_data_bytes(path)
        if size != expected:
            raise FocalinferError(
                f"{path}: {size} bytes, but {files[0]} has {expected}; every input file must hold the same "
                "tensor size (re-run preprocess for this model)"
            )


def _read_into(path: str, view: memoryview) -> None:
    if path.lower().endswith(".npy"):
        view[:] = np.ascontiguousarray(np.load(path)).tobytes()
        return
    with open(path, "rb", buffering=0) as f:
        if f.readinto(view) != len(view):
            raise FocalinferError(f"{path}: file shrank while reading; re-run preprocess")


def read_batch(batch: Batch, file_bytes: int) -> bytearray:
    """The real files' data of ``batch``, one after another (no padding): what a reader elsewhere
    needs to fill the batch with :func:`fill_batch` (``data=``) without seeing the files."""
    data = bytearray(len(batch.files) * file_bytes)
    view = memoryview(data)
    for slot, path in enumerate(batch.files):
        _read_into(path, view[slot * file_bytes:(slot + 1) * file_bytes])
    return data


def fill_batch(buffer: np.ndarray, batch: Batch, file_bytes: int, data: bytes | None = None) -> None:
    """One read per file straight into the pre-allocated batch (or ``data``, what :func:`read_batch`
    read elsewhere); padding repeats the first file."""
    view = memoryview(buffer.reshape(-1)).cast("B")
    if data is None:
        for slot, path in enumerate(batch.files):
            _read_into(path, view[slot * file_bytes:(slot + 1) * file_bytes])
    elif len(data) != len(batch.files) * file_bytes:
        raise FocalinferError(f"{batch.files[0]}: batch {batch.index} arrived with {len(data)} bytes, "
                              f"not {len(batch.files)} × {file_bytes}")
    else:
        view[:len(data)] = data
    for slot in range(len(batch.files), batch.slots):
        view[slot * file_bytes:(slot + 1) * file_bytes] = view[:file_bytes]


def split_for_devices(files: Sequence[str], devices: int) -> list[list[str]]:
    """ais_bench's multi-device split: contiguous chunks of ceil(n / devices) files."""
    size = math.ceil(len(files) / devices)
    return [list(files[i:i + size]) for i in range(0, len(files), size)]


def device_dir_name(device: int, index: int | None = None) -> str:
    """``device<D>`` (2023 generation, and focalinfer's own runs) or ``device<D>_<i>`` (2024)."""
    return f"device{device}" if index is None else f"device{device}_{index}"


def device_dir_names(devices: Sequence[int], indexed: bool) -> list[str]:
    """The folders a multi-device run writes, in --device order (``indexed``: the 2024 names)."""
    return [device_dir_name(d, i if indexed else None) for i, d in enumerate(devices)]


def device_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """The device folders inside a result folder, either layout, in --device order when indexed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted((p for p in output_dir.iterdir() if p.is_dir() and DEVICE_DIR.match(p.name)), key=_device_order)


def _device_order(path: Path) -> tuple[int, int]:
    """device<D>_<i> by i (the --device order), device<D> by D."""
    match = DEVICE_DIR.match(path.name)
    index = match.group("index")
    return (int(index) if index is not None else -1, int(match.group("device")))


def timestamp_dirname(now: float | None = None) -> str:
    return time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(now))


def summary_path(output: str, dirname: str) -> str:
    return os.path.join(output, dirname) + SUMMARY_SUFFIX


def summary_beside(result_dir: str | os.PathLike) -> Path:
    """``<dir>_summary.json``: where ais_bench puts the summary of ``result_dir`` (a device folder too)."""
    result_dir = Path(result_dir)
    return result_dir.with_name(result_dir.name + SUMMARY_SUFFIX)


def find_summary(output_dir: str | os.PathLike) -> Path | None:
    """The summary beside the directory, or an older release's ``sumary.json`` inside."""
    output_dir = Path(output_dir)
    for candidate in (summary_beside(output_dir), output_dir / OLD_SUMMARY_NAME):
        if candidate.is_file():
            return candidate
    return None


def summary_throughput(path: str | os.PathLike) -> float | None:
    """The summary's ``throughput`` (ais_bench: 1000 × batch / mean compute ms), or None."""
    try:
        value = json.loads(Path(path).read_text())["throughput"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def real_images_per_s(info: dict, batch: int | None) -> float | None:
    """Images run over the summed compute time; None when the timings cover only part of the set.

    ais_bench's ``throughput`` counts every batch slot, padding included (3 images at batch 64:
    64 per run). ``filesinfo`` lists the real images; a run times each of its ceil(n / batch)
    batches ``loop`` times, so a timing list of another length belongs to a resumed run.
    """
    files, times = info.get("filesinfo"), info.get("npu_compute_time_list")
    if not (isinstance(files, dict) and files and isinstance(times, list) and times and batch):
        return None
    try:
        total_ms = float(sum(times))
    except TypeError:
        return None
    runs = math.ceil(len(files) / batch)
    if len(times) % runs or not math.isfinite(total_ms) or total_ms <= 0:
        return None
    return len(files) * (len(times) // runs) / (total_ms / 1000.0)


def result_files(output_dir: Path) -> list[Path]:
    """Every file the contract writes for ``output_dir``: outputs (device folders too) and summaries."""
    dirs = [output_dir] + device_dirs(output_dir)
    found = [f for d in dirs for f in d.iterdir() if f.is_file() and OUTPUT_NAME.match(f.name)]
    summaries = [summary_beside(output_dir), output_dir / OLD_SUMMARY_NAME]
    summaries += [summary_beside(d) for d in dirs[1:]]
    return found + [s for s in summaries if s.is_file()]


# --- output files ------------------------------------------------------------------------


def txt_bytes(sample: np.ndarray) -> bytes:
    """np.savetxt(fmt, newline=' ') per row of (-1, last_dim), then '\\n': values, a space each."""
    rows = sample.reshape(-1, sample.shape[-1])
    value_fmt = "%f" if rows.dtype.kind == "f" else "%d"
    line_fmt = f"{value_fmt} " * rows.shape[1] + "\n"
    return "".join(line_fmt % tuple(row) for row in rows.tolist()).encode()


def npy_bytes(sample: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, sample)
    return buffer.getvalue()


def sample_bytes(sample: np.ndarray, outfmt: str) -> bytes:
    if outfmt == "TXT":
        return txt_bytes(sample)
    if outfmt == "NPY":
        return npy_bytes(sample)
    return np.ascontiguousarray(sample).tobytes()


def remove_stale_temps(output_dir: str) -> None:
    """Temp files a killed run left behind (never a finished output)."""
    remove_atomic_temps(output_dir, lambda target: bool(OUTPUT_NAME.match(target)))


def write_sample(directory: str | os.PathLike, stem: str, sample: np.ndarray, outfmt: str, index: int = 0,
                 atomic: bool = True) -> Path:
    """One sample's output ``index`` as ais_bench writes it: ``<stem>_<index>.<fmt>``.

    A (C,) vector is written as the (1, C) piece ais_bench's split gives.
    """
    sample = np.asarray(sample)
    if sample.ndim == 1:
        sample = sample.reshape(1, -1)
    path = Path(directory) / f"{stem}_{index}.{outfmt.lower()}"
    data = sample_bytes(sample, outfmt.upper())
    if atomic:
        write_bytes_atomic(path, data)
    else:
        path.write_bytes(data)
    return path


def batch_output_paths(batch: Batch, output_dir: str, num_outputs: int, outfmt: str) -> list[str]:
    return [
        os.path.join(output_dir, output_name(path, i, outfmt))
        for path in batch.files
        for i in range(num_outputs)
    ]


def batch_output_bytes(batch: Batch, outputs: Sequence[np.ndarray], outfmt: str) -> list[list[tuple[str, bytes]]]:
    """Split each output along axis 0 into one piece per slot; the real slots' files as (name, bytes),
    per real file in output order (padding slots get none)."""
    named: list[list[tuple[str, bytes]]] = [[] for _ in batch.files]
    for out_index, tensor in enumerate(outputs):
        tensor = np.asarray(tensor)
        if tensor.ndim == 0 or tensor.shape[0] % batch.slots:
            raise FocalinferError(
                f"output {out_index} of shape {tensor.shape} cannot be split into {batch.slots} samples "
                "along axis 0; the model's outputs must lead with the batch axis"
            )
        pieces = np.array_split(tensor, batch.slots, axis=0)
        for slot, path in enumerate(batch.files):
            named[slot].append((output_name(path, out_index, outfmt), sample_bytes(pieces[slot], outfmt)))
    return named


def write_output_files(output_dir: str, named: Sequence[Sequence[tuple[str, bytes]]]) -> list[list[str]]:
    """Write :func:`batch_output_bytes`' files into ``output_dir``, each atomically; their paths."""
    written = []
    for files in named:
        paths = [os.path.join(output_dir, name) for name, _ in files]
        for path, (_, data) in zip(paths, files):
            write_bytes_atomic(path, data)
        written.append(paths)
    return written


def pure_output_name(output_index: int, outfmt: str) -> str:
    return f"{PURE_STEM}_{output_index}.{outfmt.lower()}"


def write_pure_outputs(outputs: Sequence[np.ndarray], output_dir: str, outfmt: str) -> list[str]:
    """Pure inference's outputs as ais_bench writes them: each output of the last run, whole (every
    batch row), as ``pure_infer_data_<i>.<fmt>``. Returns the paths."""
    paths = []
    for index, tensor in enumerate(outputs):
        path = os.path.join(output_dir, pure_output_name(index, outfmt))
        write_bytes_atomic(path, sample_bytes(np.asarray(tensor), outfmt))
        paths.append(path)
    return paths
def write_batch_outputs(
    batch: Batch, outputs: Sequence[np.ndarray], output_dir: str, outfmt: str
) -> list[list[str]]:
    """Write the real slots' outputs of one batch; the written paths per real file, in output order."""
    return write_output_files(output_dir, batch_output_bytes(batch, outputs, outfmt))


# --- summary and log ---------------------------------------------------------------------


def _stats(values_ms: Sequence[float]) -> dict:
    if not values_ms:
        stats = dict(min=0.0, max=0.0, mean=0.0, median=0.0, percentile=0.0)
    else:
        arr = np.asarray(values_ms, dtype=np.float64)
        stats = dict(min=float(arr.min()), max=float(arr.max()), mean=float(arr.mean()),
                     median=float(np.median(arr)), percentile=float(np.percentile(arr, PERCENTILE)))
    return {
        "min": stats["min"], "max": stats["max"], "mean": stats["mean"], "median": stats["median"],
        f"percentile({PERCENTILE}%)": stats["percentile"], "count": len(values_ms),
    }


def throughput(batch_size: int, compute_ms: Sequence[float]) -> float:
    mean = float(np.mean(compute_ms)) if len(compute_ms) else 0.0
    return 1000.0 * batch_size / mean if mean else 0.0


def build_summary(
    filesinfo: dict[int, dict], compute_ms: Sequence[float], batch_size: int, args: Sequence[str],
    h2d_ms: Sequence[float] = (), d2h_ms: Sequence[float] = (),
) -> dict:
    return {
        "filesinfo": {int(k): v for k, v in sorted(filesinfo.items())},
        "NPU_compute_time": _stats(compute_ms),
        "H2D_latency": _stats(h2d_ms),
        "D2H_latency": _stats(d2h_ms),
        "throughput": throughput(batch_size, compute_ms),
        "npu_compute_time_list": [float(t) for t in compute_ms],
        "pid": os.getpid(),
        "args": list(args),
    }


def summary_log_lines(summary: dict, batch_size: int) -> list[str]:
    t = summary["NPU_compute_time"]
    p = f"percentile({PERCENTILE}%)"
    return [
        "[INFO] -----------------Performance Summary------------------",
        f"[INFO] NPU_compute_time (ms): min = {t['min']}, max = {t['max']}, mean = {t['mean']}, "
        f"median = {t['median']}, {p} = {t[p]}",
        f"[INFO] throughput 1000*batchsize.mean({batch_size})/NPU_compute_time.mean({t['mean']}): "
        f"{summary['throughput']}",
        "[INFO] ------------------------------------------------------",
    ]


def write_summary(path: str, summary: dict) -> None:
    write_bytes_atomic(path, json.dumps(summary).encode())
