"""The preprocess stage: images → one ``.bin`` per image, plus ``manifest.json``.

A ``.bin`` is float32 NCHW (normalised, the default) or, with ``dtype='uint8'``, the resized and
center-cropped RGB bytes in NHWC, the normalisation left to the model (AIPP on the NPU, the
shared :func:`focalinfer.inputs.normalize_nhwc` on the CPU).

Resumable: the manifest is written first (status 'running') with the transform and dtype, so a
rerun knows whether the ``.bin`` files already there were made the same way; a changed transform
or dtype refuses to mix outputs. A ``.bin`` is reused only while the source it was made from is
unchanged (sources.py: path, size and mtime, else its sha256, recorded per file). 'running' names
the writer's pid and host, and an interrupted run rewrites it (runstate.py), so a rerun can tell
a dead run from a live one. The space the files need is checked before any work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import multiprocessing
import os
import shutil
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path

from focalinfer import inputs
from focalinfer.errors import FocalinferError
from focalinfer.machine import cpu_count
from focalinfer.preprocess.discover import ImageItem, ImageSet, check_stems, discover_images
from focalinfer.preprocess.runstate import guarded, running_state, take_over
from focalinfer.preprocess.sources import (
    JournalWriter, SourceRecord, journal_path, known_sources, read_source, reusable, start_journal,
)
from focalinfer.preprocess.transform import ImageTransform, decode_rgb
from focalinfer.progress import progress_bar
from focalinfer.records import MANIFEST_FORMAT, Manifest, manifest_path
from focalinfer.registry import EvalTransform
from focalinfer.util import ensure_writable_dir, ensure_writable_file, write_bytes_atomic, write_json_atomic


@dataclass
class PreprocessResult:
    out_dir: Path
    manifest: Path
    labels_file: Path | None
    found: int
    written: int
    reused: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. class folders vs the model's classes
    layout: str = "flat"  # 'flat' | 'class-folders'

    def summary_line(self) -> str:
        return (
            f"preprocess: {self.found} images → {self.out_dir} "
            f"(written {self.written}, reused {self.reused}, skipped {len(self.skipped)}, "
            f"ignored {len(self.ignored)} non-image files)"
        )


def expected_bytes(t: EvalTransform, dtype: str = inputs.FLOAT32) -> int:
    return inputs.file_bytes(dtype, t.crop)


# --- work done in worker processes (module level so it pickles) ---

_worker_transform = None  # ImageTransform (float32) or its .uint8 method
_worker_journal: JournalWriter | None = None


def _init_pool_worker(transform: EvalTransform, dtype: str, journal: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no worker tracebacks
    _init_worker(transform, dtype, journal)


def _init_worker(transform: EvalTransform, dtype: str, journal: Path) -> None:
    global _worker_transform, _worker_journal
    image_transform = ImageTransform(transform)
    _worker_transform = image_transform.uint8 if dtype == inputs.UINT8 else image_transform
    _worker_journal = JournalWriter(journal)


def _convert_one(task: tuple[str, str]) -> tuple[str | None, tuple | None]:
    """Write one .bin and record its source; returns (None, the record) or (why it was skipped, None)."""
    source, target = task
    try:
        data, *fingerprint = read_source(source)
        array = _worker_transform(decode_rgb(data))
    except Exception as e:  # any decoder failure means "skip this image", never a crash
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise
        return f"cannot decode: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": "), None
    write_bytes_atomic(target, array.tobytes())
    record = SourceRecord(Path(target).name, source, *fingerprint)
    _worker_journal.add(record)
    return None, record


# --- orchestration ---


def preprocess(
    model: str,
    images: str | Path,
    out: str | Path,
    *,
    labels_out: str | Path | None = None,
    workers: int | None = None,
    limit: int | None = None,
    preset: str = "official",
    dtype: str = inputs.FLOAT32,
    force: bool = False,
    rename: bool = False,
    progress: bool = True,
) -> PreprocessResult:
    from focalinfer.registry import get_model_spec

    spec = get_model_spec(model)
    transform = spec.transform(preset)
    inputs.check_file_dtype(dtype)
    if limit is not None and limit <= 0:
        raise FocalinferError(f"--limit must be positive, got {limit}")
    found = discover_images(images, num_classes=spec.num_classes)
    if limit is not None:
        found = dataclasses.replace(found, items=found.items[:limit])
    found = check_stems(found, rename)
    out = ensure_writable_dir(out)
    if labels_out is not None:
        ensure_writable_file(labels_out, "label file (--labels-out)")
    notes = take_over(out, manifest_path(out))
    old = _claim_out_dir(out, model, preset, transform, dtype, force)

    manifest = _manifest_header(model, preset, transform, dtype, found)
    plan = _plan(found, out, manifest.bytes_per_file, old)
    plan.notes[:0] = notes
    workers = max(1, min(workers or cpu_count(), len(plan.todo) or 1))
    _check_space(out, plan.todo, manifest.bytes_per_file, workers)
    with disk_full_says_so(out, plan.todo, manifest.bytes_per_file):
        return _convert(plan, out, manifest, transform, dtype, workers, progress, labels_out)


def _convert(plan: _Plan, out: Path, manifest: Manifest, transform, dtype, workers, progress,
             labels_out) -> PreprocessResult:
    """Write the .bin files the plan lists (recording each), the label file, then the complete manifest."""
    found = plan.found
    header = {"format": MANIFEST_FORMAT, **manifest.as_dict()}
    journal = start_journal(out, list(plan.records.values()))
    write_json_atomic(manifest_path(out), {**header, **running_state()})
    reasons = guarded(manifest_path(out), header,
                      lambda: _run_all(plan, out, transform, dtype, workers, progress, journal))
    skipped = [(_rel(i, found), r) for i, r in zip(plan.todo, reasons) if r is not None]
    skipped_sources = {i.source for i, r in zip(plan.todo, reasons) if r is not None}
    ok_items = [i for i in found.items if i.source not in skipped_sources]
    result = PreprocessResult(
        out_dir=out,
        manifest=manifest_path(out),
        labels_file=_write_labels(ok_items, found, labels_out),
        found=len(found.items),
        written=len(plan.todo) - len(skipped),
        reused=len(found.items) - len(plan.todo),
        skipped=skipped,
        ignored=found.ignored,
        warnings=plan.notes + found.warnings,
        layout=found.layout,
    )
    _final_manifest(manifest, result, ok_items, found, plan.records).write(out)
    journal.unlink()
    return result


def _rel(item: ImageItem, found: ImageSet) -> str:
    return str(item.source.relative_to(found.root))


@dataclass
class _Plan:
    todo: list[ImageItem]  # images to convert
    records: dict[str, SourceRecord]  # bin name → its source (the reused ones now, the written ones as they finish)
    notes: list[str]
    found: ImageSet
    root: Path  # found.root resolved: records name sources by absolute path

    def source(self, item: ImageItem) -> str:
        return str(self.root / _rel(item, self.found))


def _plan(found: ImageSet, out: Path, size: int, old: Manifest | None) -> _Plan:
    """Which images need converting: a .bin is reused only when its recorded source is unchanged."""
    plan = _Plan([], {}, [], found, found.root.resolve())
    known = known_sources(out, old.files if old else [], old.extra.get("images_dir") if old else None)
    stale = 0
    for item in found.items:
        name = f"{item.stem}.bin"
        record = reusable(known.get(name), plan.source(item), out / name, size)
        if record is None:
            plan.todo.append(item)
            stale += _size_is(out / name, size)
        else:
            plan.records[name] = record
    if stale:
        plan.notes.append(f"{out}: {stale} .bin files were made from other sources than these images (another "
                          "--images, edited images, or an older focalinfer that recorded no sources); writing them again")
    return plan


def _size_is(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _check_space(out: Path, todo: list[ImageItem], size: int, workers: int) -> None:
    """Refuse before any work when the files cannot fit (each worker also holds one temp file)."""
    new = sum(not (out / f"{i.stem}.bin").exists() for i in todo)
    in_flight = min(workers, len(todo))
    needed = (new + in_flight) * size
    free = shutil.disk_usage(out).free
    if needed > free:
        raise FocalinferError(
            f"{out}: not enough free space: {new} new files (+{in_flight} being written) × {size:,} bytes ≈ "
            f"{_mb(needed)} needed, {_mb(free)} free; free space or choose another --out"
        )


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_says_so(out: Path, todo: list[ImageItem], size: int):
    """A full disk mid-run (someone else filled it) is one line naming the folder and the space."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise FocalinferError(
            f"{out}: the disk filled up ({e.strerror}); this run writes {len(todo)} files × {size:,} bytes "
            f"≈ {_mb(len(todo) * size)}: free that much and rerun to resume (finished files are kept), "
            "or choose another --out"
        ) from None


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _run_all(plan: _Plan, out, transform, dtype, workers, progress, journal: Path) -> list[str | None]:
    """Convert ``plan.todo`` in order; the reason per item (None = written), independent of scheduling."""
    tasks = [(plan.source(i), str(out / f"{i.stem}.bin")) for i in plan.todo]
    with progress_bar(total=len(tasks), unit="img", desc="preprocess", enabled=progress) as bar:
        if workers == 1:
            _init_worker(transform, dtype, journal)
            try:
                return _collect(map(_convert_one, tasks), bar, plan)
            finally:
                _worker_journal.close()
        chunk = max(1, min(64, len(tasks) // (workers * 8)))
        with multiprocessing.Pool(workers, _init_pool_worker, (transform, dtype, journal)) as pool:
            return _collect(pool.imap(_convert_one, tasks, chunksize=chunk), bar, plan)


def _collect(outcomes, bar, plan: _Plan) -> list[str | None]:
    reasons = []
    for reason, record in outcomes:
        reasons.append(reason)
        if record is not None:
            plan.records[record.bin] = record
        bar.update(1)
    return reasons


def _claim_out_dir(out: Path, model: str, preset: str, transform: EvalTransform, dtype: str,
                   force: bool) -> Manifest | None:
    """Refuse to mix .bin files made by another transform or dtype (or of unknown origin) with ours.

    Returns the manifest whose records say what the .bin files there were made from (None after
    ``force`` removed them)."""
    try:
        old = Manifest.read(out)
    except FocalinferError:
        old, same, what = None, False, "an unreadable manifest"
    else:
        if old is not None:
            try:
                same = EvalTransform.from_dict(old.transform) == transform and old.dtype == dtype
            except (KeyError, TypeError, ValueError):
                same = False
            what = f"{old.model} / preset {old.preset} / {old.dtype}"
        else:
            same, what = not any(out.glob("*.bin")), "no manifest (unknown origin)"
    if same:
        return old
    if not force:
        raise FocalinferError(
            f"{out}: holds .bin files made with another transform ({what}); "
            f"use a new --out for {model} / preset {preset} / {dtype}{_make_hint(out, model, dtype)}, "
            "or --force to replace them"
        )
    for stale in out.glob("*.bin"):
        stale.unlink()
    journal_path(out).unlink(missing_ok=True)
    return None


def _make_hint(out: Path, model: str, dtype: str) -> str:
    """Under make, --out is the DATABIN variable: name it, with a folder of this model's own."""
    if not os.environ.get("MAKELEVEL"):
        return ""
    suffix = "_uint8" if dtype == inputs.UINT8 else ""
    return f" (with make: DATABIN={out.parent / f'databin_{model}{suffix}'} on this and the later make targets)"


def _manifest_header(model: str, preset: str, transform: EvalTransform, dtype: str, found: ImageSet) -> Manifest:
    left_to_model = inputs.Normalization(transform.mean, transform.std).as_dict() if dtype == inputs.UINT8 else None
    return Manifest(
        model=model,
        preset=preset,
        transform=transform.as_dict(),
        dtype=dtype,
        tensor_layout=inputs.TENSOR_LAYOUTS[dtype],
        shape=list(inputs.file_shape(dtype, transform.crop)),
        bytes_per_file=expected_bytes(transform, dtype),
        normalization=left_to_model,
        status="running",
        extra={
            "byte_order": "little",
            "images_dir": str(found.root.resolve()),
            "layout": found.layout,
            "classes": found.classes,
            "class_index": found.class_index,
        },
    )


def _write_labels(items: list[ImageItem], found: ImageSet, labels_out) -> Path | None:
    if found.layout != "class-folders" or labels_out is None:
        return None
    lines = "".join(f"{i.name} {i.label}\n" for i in items)
    path = Path(labels_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lines.encode())
    return path


def _final_manifest(header: Manifest, result: PreprocessResult, items: list[ImageItem], found: ImageSet,
                    records: dict[str, SourceRecord]) -> Manifest:
    extra = {
        **header.extra,
        "counts": {
            "found": result.found,
            "written": result.written,
            "reused": result.reused,
            "skipped": len(result.skipped),
            "ignored": len(result.ignored),
        },
        "labels_file": str(result.labels_file) if result.labels_file else None,
        "skipped": [{"file": f, "reason": r} for f, r in result.skipped],
        "ignored": [{"file": f, "reason": r} for f, r in result.ignored],
    }
    files = [
        {"source": _rel(i, found), "bin": f"{i.stem}.bin", **({"label": i.label} if i.label is not None else {}),
         **records[f"{i.stem}.bin"].manifest_fields()}
        for i in items
    ]
    return replace(header, status="complete", files=files, extra=extra)
