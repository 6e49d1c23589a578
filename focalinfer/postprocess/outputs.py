"""Read an ais_bench (or focalinfer onnxruntime) result directory: per-sample outputs and summary.

One file per sample and model output, ``<stem>_<output index>.<txt|npy|bin>``, whatever batch
size produced them; only output 0 holds the logits. The run's summary is ``<dir>_summary.json``
beside the directory (ais_bench) or ``sumary.json`` inside it (ais_infer before Nov 2022). A
multi-device run's folder holds one folder per device, ``device<D>`` (2023 generation) or
``device<D>_<i>`` (2024), each with its summary beside it; both are read alike.
"""

from __future__ import annotations

import ast
import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from focalinfer.errors import FocalinferError, UsageError
from focalinfer.layout import OUTFMTS, OUTPUT_NAME, device_dirs, find_summary, real_images_per_s
from focalinfer.machine import cpu_count


# Per-file status codes (int8 so a chunk's statuses pickle cheaply between processes).
OK, UNREADABLE, BAD_LENGTH, NON_FINITE = 0, 1, 2, 3

# Below this many files a process pool costs more to start than it saves.
POOL_MIN_FILES = 3000


# --- directory and summary --------------------------------------------------------------


@dataclass
class RunSummary:
    """What eval carries over from the inference run's summary JSON."""

    path: Path
    throughput: float | None = None     # ais_bench's formula: 1000 × batch / mean compute ms (counts padding)
    images_per_s: float | None = None   # real images over the measured compute time
    batch_size: int | None = None
    model: str | None = None
    backend: str | None = None
    problem: str | None = None


@dataclass
class ResultDir:
    path: Path
    outfmt: str
    outputs: dict[str, str]            # stem -> output 0 file path
    other_outputs: int = 0             # files of output index > 0 (not logits; ignored)
    summary: RunSummary | None = None
    notes: list[str] = field(default_factory=list)


def _scan_one(directory: Path) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """ext -> stem -> [(output index, path)] for the output files directly in ``directory``."""
    # Plain strings, not Path objects: 50,000 Paths cost more than the scan itself.
    found: dict[str, dict[str, list[tuple[int, str]]]] = {}
    match_name = OUTPUT_NAME.match
    with os.scandir(directory) as entries:
        for entry in entries:
            match = match_name(entry.name)
            if match and not entry.name.startswith(".") and entry.is_file():
                stem, index, ext = match.groups()
                found.setdefault(ext.upper(), {}).setdefault(stem, []).append((int(index), entry.path))
    return found


def _merge_device_dirs(directory: Path) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """ais_bench --device 0,1 writes ``<dir>/device<D>/`` or ``<dir>/device<D>_<i>/``: one result set
    split over devices."""
    merged: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    for sub in device_dirs(directory):
        for ext, stems in _scan_one(sub).items():
            target = merged.setdefault(ext, {})
            for stem, files in stems.items():
                if stem in target:
                    raise FocalinferError(
                        f"{files[0][1]}: {stem} also has outputs in {os.path.dirname(target[stem][0][1])}; two "
                        "device folders hold the same image, so the runs overlap (ais_bench of 2024 runs every "
                        "input on every device unless --divide_input true) — score one device folder, or rerun"
                    )
                target[stem] = files
    return merged


def _choose_format(directory: Path, found: dict, outfmt: str | None) -> str:
    if outfmt is not None:
        outfmt = outfmt.upper()
        if outfmt not in OUTFMTS:
            raise UsageError(f"--outfmt {outfmt}: choose one of {', '.join(OUTFMTS)}")
        if outfmt not in found:
            present = ", ".join(sorted(found)) or "none"
            raise FocalinferError(
                f"{directory}: no {outfmt} outputs (<name>_0.{outfmt.lower()}); formats present: {present}"
            )
        return outfmt
    if len(found) > 1:
        raise FocalinferError(
            f"{directory}: holds outputs in several formats ({', '.join(sorted(found))}); "
            "pass --outfmt to say which to score"
        )
    return next(iter(found))


def scan_results(results_dir: str | os.PathLike, outfmt: str | None = None) -> ResultDir:
    """Index a result directory's output-0 files by stem, and read its summary if there is one."""
    directory = Path(results_dir)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise FocalinferError(
            f"{directory}: result directory {what}; pass the folder ais_bench/focalinfer infer wrote "
            "(<output>/<output_dirname>)"
        )
    found = _scan_one(directory)
    notes = []
    if not found:
        found = _merge_device_dirs(directory)
        if found:
            notes.append(f"read the outputs of {directory}/device*/ (a multi-device run)")
    if not found:
        raise FocalinferError(
            f"{directory}: no output files named <image>_<i>.txt|npy|bin; is this the folder "
            "inference wrote (not its parent)?"
        )
    fmt = _choose_format(directory, found, outfmt)
    outputs: dict[str, str] = {}
    other = 0
    for stem, files in found[fmt].items():
        for index, path in files:
            if index == 0:
                outputs[stem] = path
            else:
                other += 1
    if not outputs:
        raise FocalinferError(
            f"{directory}: {fmt} outputs exist but none of output index 0 (<image>_0.{fmt.lower()}), "
            "which holds the logits"
        )
    summary = read_run_summary(directory)
    if summary is None and notes:
        summary = _device_summaries(directory)
    if summary and summary.problem:
        notes.append(summary.problem)
    return ResultDir(directory, fmt, outputs, other, summary, notes)


def _device_summaries(directory: Path) -> RunSummary | None:
    """A multi-device run: a summary beside each device folder; the devices ran in parallel, so
    their throughputs add up."""
    parts = [read_run_summary(sub) for sub in device_dirs(directory)]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    return RunSummary(
        path=first.path, throughput=_sum_or_none(p.throughput for p in parts),
        images_per_s=_sum_or_none(p.images_per_s for p in parts),
        batch_size=first.batch_size, model=first.model, backend=first.backend,
        problem=next((p.problem for p in parts if p.problem), None),
    )


def _sum_or_none(values) -> float | None:
    values = list(values)
    return sum(values) if values and all(v is not None for v in values) else None


def run_summary(results_dir: str | os.PathLike) -> RunSummary | None:
    """The run summary of a result folder: beside it, or per device for a multi-device run."""
    directory = Path(results_dir)
    summary = read_run_summary(directory)
    if summary is None and directory.is_dir():
        summary = _device_summaries(directory)
    return summary


_BATCH_FLAGS = ("--batchsize", "--batch-size", "--batch_size", "--dymBatch", "--dym-batch", "--dym_batch")
_MODEL_FLAGS = ("--model", "--om-model", "--om_model", "--model-file", "--model_file")
_AIS_TOOLS = ("ais_bench", "ais_infer", "benchmark")


def _flag_value(argv: Sequence[str], flags: Sequence[str]) -> str | None:
    for i, token in enumerate(argv):
        for flag in flags:
            if token == flag and i + 1 < len(argv):
                return argv[i + 1]
            if token.startswith(flag + "="):
                return token[len(flag) + 1:]
    return None


def _tool_flags(argv: Sequence[str]) -> Sequence[str]:
    """The tool's own arguments. ais_bench stores its sys.argv, whose first item is the program
    (for ``python3 -m ais_bench`` the module's path: Python drops its own flags)."""
    return argv[1:]


def _int_or_none(value) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _batch_from_timing(info: dict, throughput: float | None) -> int | None:
    """ais_bench's throughput is 1000 × batch / mean compute time: solve it for the batch."""
    try:
        mean_ms = float(info["NPU_compute_time"]["mean"])
    except (KeyError, TypeError, ValueError):
        return None
    if not throughput or not mean_ms:
        return None
    batch = throughput * mean_ms / 1000.0
    return int(round(batch)) if round(batch) >= 1 and abs(batch - round(batch)) < 1e-6 * batch else None


def _backend_from(argv: Sequence[str], model: str | None) -> str | None:
    named = _flag_value(argv, ("--backend",))
    if named and named != "auto":
        return named
    if model:
        suffix = Path(model).suffix.lower()
        if suffix == ".om":
            return "ais_bench"
        if suffix == ".onnx":
            return "onnxruntime"
    if argv and any(tool in str(argv[0]) for tool in _AIS_TOOLS):
        return "ais_bench"
    return None


def read_run_summary(results_dir: str | os.PathLike) -> RunSummary | None:
    """Throughput, batch size, model and backend from the run's summary JSON (None if absent)."""
    path = find_summary(results_dir)
    if path is None:
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return RunSummary(path, problem=f"{path}: not readable JSON ({e}); throughput not carried over")
    if not isinstance(info, dict):
        return RunSummary(path, problem=f"{path}: not a summary object; throughput not carried over")
    throughput = info.get("throughput")
    throughput = float(throughput) if isinstance(throughput, (int, float)) and math.isfinite(throughput) else None
    args = info.get("args")
    if isinstance(args, dict):
        batch = _int_or_none(args.get("batchsize") or args.get("batch_size"))
        model = args.get("model") or args.get("om_model")
        argv: list[str] = []
    else:
        argv = [str(a) for a in args] if isinstance(args, list) else []
        flags = _tool_flags(argv)
        batch = _int_or_none(_flag_value(flags, _BATCH_FLAGS))
        # "-m" is ais_bench's short --model; in another program's argv it means something else.
        is_ais = bool(argv) and any(tool in argv[0] for tool in _AIS_TOOLS)
        model = _flag_value(flags, _MODEL_FLAGS + (("-m",) if is_ais else ()))
    if batch is None:
        batch = _batch_from_timing(info, throughput)
    return RunSummary(path, throughput, real_images_per_s(info, batch), batch, model, _backend_from(argv, model))


# --- reading the logits -----------------------------------------------------------------

# BIN files carry no dtype: what their bytes are read as (--output-dtype). TXT is text and NPY
# says its own dtype.
OUTPUT_DTYPES = ("float32", "float16")
# Files read first to sniff the class count, or to check that the outputs fit the model's.
PROBE_FILES = 16


@dataclass
class Logits:
    """Output-0 vectors of ``stems``, one row each; rows whose status is not OK are zeros."""

    stems: list[str]
    values: np.ndarray                  # (N, num_classes) float32
    status: np.ndarray                  # (N,) int8: OK / UNREADABLE / BAD_LENGTH / NON_FINITE
    lengths: np.ndarray                 # (N,) int64: values found per file (-1 if unreadable)
    errors: dict[int, str]              # row -> what is wrong, for UNREADABLE and BAD_LENGTH rows
    appended: list[str]                 # stems of valid TXT files with more than one line
    num_classes: int
    output_dtype: str = "float32"

    @property
    def valid(self) -> np.ndarray:
        return self.status == OK

    def problem(self, row: int) -> str:
        if self.status[row] == NON_FINITE:
            return "non-finite logit (NaN or inf)"
        return self.errors.get(row, f"{self.lengths[row]} values, expected {self.num_classes}")


def _txt_vector(data: bytes) -> tuple[np.ndarray, bool]:
    """The first line's values, and whether more non-blank lines follow (old ais_infer appended)."""
    end = data.find(b"\n")
    if end < 0:
        line, appended = data, False
    else:
        line, appended = data[:end], bool(data[end + 1:].strip())
    if not line.strip():
        # np.fromstring turns a whitespace-only string into [-1.0]; an empty line holds no values.
        return np.empty(0, np.float32), appended
    vector = _fixed6_vector(line)
    if vector is None:
        vector = np.fromstring(line, dtype=np.float32, sep=" ")
    return vector, appended


def _txt_lines(data: bytes) -> int:
    return sum(1 for line in data.splitlines() if line.strip())


_EXACT_INT = 2**53


def _fixed6_vector(line: bytes) -> np.ndarray | None:
    """Parse ais_bench's ``%f `` format as integers of millionths (~1.5× faster than floats).

    Exact: k / 1e6 in float64 is the double nearest the decimal, as strtod gives, and the cast
    to float32 is the one np.loadtxt(dtype=float32) makes. Returns None (use the float parser)
    unless every value is one '.' with exactly six digits after it and one space after those.
    """
    chars = np.frombuffer(line, np.uint8)
    dots = np.flatnonzero(chars == 46)
    spaces = np.flatnonzero(chars == 32)
    count = len(spaces)
    # Each value's space sits 7 bytes after its dot, and no dot comes before the previous space.
    if not (count and len(dots) == count and (spaces - dots == 7).all() and (dots[1:] > spaces[:-1]).all()):
        return None
    # int32 parses faster but wraps silently: only when no value has more than 10 characters
    # (|x| < 1000), which every logit does.
    narrow = spaces[0] <= 10 and (count == 1 or int(np.diff(spaces).max()) <= 11)
    try:
        millionths = np.fromstring(line.replace(b".", b""), dtype=np.int32 if narrow else np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if millionths.size != count:
        return None
    # int64 saturates and float64 is exact only below 2**53; "-0.000000" loses its sign as an int.
    if not narrow and (millionths.max() >= _EXACT_INT or millionths.min() <= -_EXACT_INT):
        return None
    if not millionths.all() and b"-0.000000" in line:
        return None
    return (millionths / 1e6).astype(np.float32)


def _read_bytes(path: str) -> bytes:
    """The whole file; os.read skips the buffered-file layer, a third of the cost for small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        parts = [data]
        while chunk := os.read(fd, _READ_SIZE):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def _npy_vector(data: bytes, headers: dict) -> tuple[np.ndarray, tuple]:
    """np.load without its per-file header parsing: every file of a run has the same header."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy file (no NUMPY magic)")
    size_bytes = 2 if data[6] == 1 else 4
    header_end = 8 + size_bytes + int.from_bytes(data[8:8 + size_bytes], "little")
    header = data[8 + size_bytes:header_end]
    parsed = headers.get(header)
    if parsed is None:
        fields = ast.literal_eval(header.decode("latin1"))
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
        if dtype.hasobject or dtype.kind not in "fiu":
            raise ValueError(f"dtype {dtype} is not numeric")
        parsed = headers[header] = (dtype, tuple(fields["shape"]))
    dtype, shape = parsed
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_end), shape


def _is_vector(shape: tuple) -> bool:
    """(C,), (1, C), (1, 1, C)…: one vector. (2, C) or (1, 21, 224, 224) is not a classifier's output."""
    return len(shape) <= 1 or sorted(shape)[-2] <= 1


def fitting_dtype(nbytes: int, classes: int, dtype: str) -> str | None:
    """The other BIN dtype in which ``nbytes`` is exactly ``classes`` values, if any."""
    return next((other for other in OUTPUT_DTYPES
                 if other != dtype and nbytes == classes * np.dtype(other).itemsize), None)


def bin_size_problem(nbytes: int, classes: int, dtype: str) -> str:
    """Why ``nbytes`` is not one vector of ``classes`` ``dtype`` values (the size rule, stated)."""
    itemsize = np.dtype(dtype).itemsize
    other = fitting_dtype(nbytes, classes, dtype)
    if other:
        return (f"{nbytes} bytes = {classes} {other} values, not {classes} {dtype} ({classes * itemsize} bytes); "
                f"pass --output-dtype {other}")
    return f"{nbytes / itemsize:g} values, expected {classes} ({nbytes} bytes of {dtype}, {itemsize} bytes each)"


def _read_chunk(task: tuple[Sequence[str], str, int, str]):
    """Parse one chunk of files into rows; runs in a worker process for large result sets.

    ``num_classes`` 0 (the probe): every readable file is BAD_LENGTH, with its length.
    """
    paths, outfmt, num_classes, dtype = task
    bin_dtype = np.dtype(dtype).newbyteorder("<")
    values = np.zeros((len(paths), num_classes), np.float32)
    status = np.zeros(len(paths), np.int8)
    lengths = np.full(len(paths), -1, np.int64)
    errors: dict[int, str] = {}
    not_vectors: list[int] = []          # TXT of several lines, NPY of several vectors
    headers: dict = {}
    with warnings.catch_warnings():
        # Older numpy only warns when text does not parse; make that an error as numpy 2 does.
        warnings.simplefilter("error", DeprecationWarning)
        for row, path in enumerate(paths):
            problem = None
            try:
                data = _read_bytes(path)
                if outfmt == "TXT":
                    vector, several = _txt_vector(data)
                    if several and vector.size != num_classes:
                        lines = _txt_lines(data)
                        problem = f"{lines} lines of {vector.size} values (a ({lines}, {vector.size}) tensor)"
                elif outfmt == "NPY":
                    vector, shape = _npy_vector(data, headers)
                    several = not _is_vector(shape)
                    if several:
                        problem = f"shape {shape} holds more than one vector (a classifier writes (1, C))"
                else:
                    several, nbytes = False, len(data)
                    if num_classes and nbytes != num_classes * bin_dtype.itemsize and not nbytes % 2:
                        problem = bin_size_problem(nbytes, num_classes, dtype)
                        vector = np.empty(nbytes // bin_dtype.itemsize, np.float32)  # its length only
                    elif nbytes % bin_dtype.itemsize:
                        raise ValueError(f"{nbytes} bytes is not a whole number of {dtype} values")
                    else:
                        vector = np.frombuffer(data, dtype=bin_dtype)
            except (OSError, ValueError, SyntaxError, KeyError, DeprecationWarning) as e:
                status[row] = UNREADABLE
                errors[row] = "unreadable: " + (str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
                continue
            lengths[row] = vector.size
            if several:
                not_vectors.append(row)
            if problem or vector.size != num_classes:
                status[row] = BAD_LENGTH
                if num_classes:
                    errors[row] = problem or f"{vector.size} values, expected {num_classes}"
                    if outfmt == "TXT" and several:
                        errors[row] += f", expected one line of {num_classes}"
                elif problem:
                    errors[row] = problem
                continue
            values[row] = vector
    finite = np.isfinite(values).all(axis=1)
    status[(status == OK) & ~finite] = NON_FINITE
    values[status != OK] = 0.0
    return values, status, lengths, errors, not_vectors


def check_classes(paths: Sequence[str], outfmt: str, num_classes: int | None, output_dtype: str = "float32",
                  source: str | None = None) -> int:
    """The class count to read ``paths`` with: ``num_classes`` after checking the first files fit
    it, else sniffed from them. Outputs whose majority has another shape are an error naming
    the first such file: they were not made by this model, and per-image "invalid" would hide it.
    """
    probe = list(paths[:PROBE_FILES])
    if not probe:
        if num_classes:
            return num_classes
        raise FocalinferError("no output files to read the class count from")
    _, status, lengths, errors, not_vectors = _read_chunk((probe, outfmt, num_classes or 0, output_dtype))
    # Empty files (a killed writer) say nothing about the shape: they are invalid one by one.
    readable = [row for row in range(len(probe)) if lengths[row] > 0]
    if num_classes:
        wrong = [row for row in readable if status[row] == BAD_LENGTH]
        if wrong and 2 * len(wrong) >= len(readable):
            row = wrong[0]
            if outfmt == "BIN" and fitting_dtype(os.path.getsize(probe[row]), num_classes, output_dtype):
                raise FocalinferError(f"{probe[row]}: {errors[row]} ({source or 'the model'} gives {num_classes} "
                                      "classes)")
            raise FocalinferError(
                f"{probe[row]}: {errors[row]}, but {source or 'the model'} gives {num_classes} classes; these "
                "outputs were not made by this model (or not by a classifier)"
            )
        return num_classes
    if not readable:
        raise FocalinferError(f"{probe[0]}: {errors.get(0, 'no values')}; the class count cannot be read from "
                              "outputs that hold no values (pass --num-classes N)")
    several = [row for row in readable if row in not_vectors]
    if 2 * len(several) > len(readable):
        row = several[0]
        raise FocalinferError(
            f"{probe[row]}: {errors.get(row) or 'several vectors'}; a classifier writes one vector per image, so "
            "these are not a classifier's outputs (old ais_infer appended one TXT line per rerun: then pass "
            "--num-classes N to read the first line)"
        )
    sizes = Counter(int(lengths[row]) for row in readable if row not in not_vectors)
    return sizes.most_common(1)[0][0]


def default_workers() -> int:
    return cpu_count()


def _chunks(paths: Sequence[str], workers: int) -> list[Sequence[str]]:
    # A few chunks per worker evens out uneven files without much pickling overhead.
    size = max(256, math.ceil(len(paths) / (workers * 4)))
    return [paths[i:i + size] for i in range(0, len(paths), size)]


def pool_context():
    import multiprocessing
    import sys

    # fork starts workers in ~0.1 s less, and they only run numpy on their own files. From 3.12
    # Python warns when a process with threads (torch, onnxruntime) forks: use forkserver there.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.version_info < (3, 12):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else None)


def read_logits(
    stems: Sequence[str], paths: Sequence[str | os.PathLike], outfmt: str,
    num_classes: int | None = None, workers: int | None = None, *, output_dtype: str = "float32",
    classes_source: str | None = None,
) -> Logits:
    """Read output-0 files into an (N, num_classes) float32 array, one row per stem.

    ``num_classes`` None: sniffed from the first files (see :func:`check_classes`, which also
    refuses outputs of another shape). A bad file becomes a status, never an exception. Large
    sets are parsed by a process pool in chunks. ``output_dtype`` is what BIN bytes are read as.
    """
    if output_dtype not in OUTPUT_DTYPES:
        raise UsageError(f"--output-dtype {output_dtype}: choose one of {', '.join(OUTPUT_DTYPES)}")
    paths = [os.fspath(p) for p in paths]
    outfmt = outfmt.upper()
    classes = check_classes(paths, outfmt, num_classes, output_dtype, classes_source)
    workers = default_workers() if workers is None else max(1, workers)
    tasks = [(chunk, outfmt, classes, output_dtype) for chunk in _chunks(paths, workers)]
    if workers > 1 and len(paths) >= POOL_MIN_FILES:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
            parts = list(pool.map(_read_chunk, tasks))
    else:
        parts = [_read_chunk(task) for task in tasks]
    return _join_parts(list(stems), parts, classes, output_dtype)


def _join_parts(stems: list[str], parts: list, classes: int, output_dtype: str) -> Logits:
    if not parts:
        return Logits(stems, np.zeros((0, classes), np.float32), np.zeros(0, np.int8),
                      np.zeros(0, np.int64), {}, [], classes, output_dtype)
    errors: dict[int, str] = {}
    appended: list[str] = []
    offset = 0
    for _, status, _, chunk_errors, not_vectors in parts:
        errors.update({offset + row: msg for row, msg in chunk_errors.items()})
        # A valid file that is not one vector is a TXT with the right first line and more lines.
        appended.extend(stems[offset + row] for row in not_vectors if status[row] == OK)
        offset += len(status)
    return Logits(
        stems=stems,
        values=np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0],
        status=np.concatenate([p[1] for p in parts]),
        lengths=np.concatenate([p[2] for p in parts]),
        errors=errors,
        appended=appended,
        num_classes=classes,
        output_dtype=output_dtype,
    )


def read_result_logits(result: ResultDir, stems: Sequence[str] | None = None,
                       num_classes: int | None = None, workers: int | None = None, *,
                       output_dtype: str = "float32", classes_source: str | None = None) -> Logits:
    """The logits of ``stems`` (default: every output in the directory, sorted by name)."""
    stems = sorted(result.outputs) if stems is None else list(stems)
    return read_logits(stems, [result.outputs[s] for s in stems], result.outfmt, num_classes, workers,
                       output_dtype=output_dtype, classes_source=classes_source)
