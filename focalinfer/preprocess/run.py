"""The preprocess stage: images → one ``.bin`` per image, plus ``manifest.json``.

A ``.bin`` is float32 NCHW (normalised, the default) or, with ``dtype='uint8'``, the resized and
center-cropped RGB bytes in NHWC, the normalisation left to the model (AIPP on the NPU, the
shared :func:`focalinfer.inputs.normalize_nhwc` on the CPU).

Resumable: the manifest is written first (status 'running') with the transform and dtype, so a
rerun knows whether the ``.bin`` files already there were made the same way and skips them; a
changed transform or dtype refuses to mix outputs. 'running' names the writer's pid and host, and an interrupted
run rewrites it (runstate.py), so a rerun can tell a dead run from a live one.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path

from focalinfer import inputs
from focalinfer.errors import FocalinferError
from focalinfer.machine import cpu_count
from focalinfer.preprocess.discover import ImageItem, ImageSet, check_stems, discover_images
from focalinfer.preprocess.runstate import guarded, running_state, take_over
from focalinfer.preprocess.transform import ImageTransform, load_rgb
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


def _init_pool_worker(transform: EvalTransform, dtype: str = inputs.FLOAT32) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no worker tracebacks
    _init_worker(transform, dtype)


def _init_worker(transform: EvalTransform, dtype: str = inputs.FLOAT32) -> None:
    global _worker_transform
    image_transform = ImageTransform(transform)
    _worker_transform = image_transform.uint8 if dtype == inputs.UINT8 else image_transform


def _convert_one(task: tuple[str, str]) -> str | None:
    """Write one .bin; returns None on success or the reason the image was skipped."""
    source, target = task
    try:
        array = _worker_transform(load_rgb(source))
    except Exception as e:  # any decoder failure means "skip this image", never a crash
        return f"cannot decode: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    write_bytes_atomic(target, array.tobytes())
    return None


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
    _claim_out_dir(out, model, preset, transform, dtype, force)

    manifest = _manifest_header(model, preset, transform, dtype, found)
    header = {"format": MANIFEST_FORMAT, **manifest.as_dict()}
    write_json_atomic(manifest_path(out), {**header, **running_state()})
    todo = [i for i in found.items if not _done(out / f"{i.stem}.bin", manifest.bytes_per_file)]
    reasons = guarded(manifest_path(out), header, lambda: _run_all(todo, out, transform, dtype, workers, progress))
    skipped = [(_rel(i, found), r) for i, r in zip(todo, reasons) if r is not None]
    skipped_sources = {i.source for i, r in zip(todo, reasons) if r is not None}
    ok_items = [i for i in found.items if i.source not in skipped_sources]

    labels_file = _write_labels(ok_items, found, labels_out)
    result = PreprocessResult(
        out_dir=out,
        manifest=manifest_path(out),
        labels_file=labels_file,
        found=len(found.items),
        written=len(todo) - len(skipped),
        reused=len(found.items) - len(todo),
        skipped=skipped,
        ignored=found.ignored,
        warnings=notes + found.warnings,
    )
    _final_manifest(manifest, result, ok_items, found).write(out)
    return result


def _rel(item: ImageItem, found: ImageSet) -> str:
    return str(item.source.relative_to(found.root))


def _done(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _run_all(todo, out, transform, dtype, workers, progress) -> list[str | None]:
    """Convert ``todo`` in order; the reason per item (None = written), independent of scheduling."""
    tasks = [(str(i.source), str(out / f"{i.stem}.bin")) for i in todo]
    workers = max(1, min(workers or cpu_count(), len(tasks) or 1))
    with progress_bar(total=len(tasks), unit="img", desc="preprocess", enabled=progress) as bar:
        if workers == 1:
            _init_worker(transform, dtype)
            return _collect(map(_convert_one, tasks), bar)
        chunk = max(1, min(64, len(tasks) // (workers * 8)))
        with multiprocessing.Pool(workers, _init_pool_worker, (transform, dtype)) as pool:
            return _collect(pool.imap(_convert_one, tasks, chunksize=chunk), bar)


def _collect(reasons, bar) -> list[str | None]:
    results = []
    for reason in reasons:
        results.append(reason)
        bar.update(1)
    return results


def _claim_out_dir(out: Path, model: str, preset: str, transform: EvalTransform, dtype: str, force: bool) -> None:
    """Refuse to mix .bin files made by another transform or dtype (or of unknown origin) with ours."""
    try:
        old = Manifest.read(out)
    except FocalinferError:
        same, what = False, "an unreadable manifest"
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
        return
    if not force:
        raise FocalinferError(
            f"{out}: holds .bin files made with another transform ({what}); "
            f"use a new --out for {model} / preset {preset} / {dtype}, or --force to replace them"
        )
    for stale in out.glob("*.bin"):
        stale.unlink()


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


def _final_manifest(header: Manifest, result: PreprocessResult, items: list[ImageItem], found: ImageSet) -> Manifest:
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
        {"source": _rel(i, found), "bin": f"{i.stem}.bin", **({"label": i.label} if i.label is not None else {})}
        for i in items
    ]
    return replace(header, status="complete", files=files, extra=extra)
