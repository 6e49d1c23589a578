"""A rerun reuses a .bin only while the source it was made from is unchanged (issue 22, point 1).

Real JPEGs from the sample generator: two seeds give two sets of different photos under the same
file names, as two ImageNet folders would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from focalinfer.preprocess import preprocess
from focalinfer.preprocess import sources
from focalinfer.preprocess.sources import JOURNAL
from focalinfer.samples import make_sample_set

MODEL = "van-b0"  # 224 crop, cheap to build: the model is never built here anyway


def photos(root: Path, seed: int, count: int = 5) -> Path:
    make_sample_set(root, count=count, seed=seed)
    (root / "val_label.txt").unlink()
    return root


def bins(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


def run(images: Path, out: Path):
    return preprocess(MODEL, images, out, workers=2, progress=False)


def age(folder: Path, seconds: float = 3600) -> None:
    """Sources last changed long before any conversion: their mtime alone can be trusted."""
    then = time.time() - seconds
    for p in folder.iterdir():
        os.utime(p, (then, then))


@pytest.fixture
def a_and_b(tmp_path):
    a, b = photos(tmp_path / "A", seed=0), photos(tmp_path / "B", seed=1)
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    assert all((a / n).read_bytes() != (b / n).read_bytes() for n in os.listdir(a))
    fresh = tmp_path / "fresh_b"
    run(b, fresh)
    return a, b, bins(fresh)


def test_other_photos_under_the_same_names_are_converted_again(tmp_path, a_and_b):
    a, b, b_bins = a_and_b
    out = tmp_path / "X"
    run(a, out)
    second = run(b, out)
    assert (second.written, second.reused) == (5, 0)
    assert any("5 .bin files were made from other sources" in w for w in second.warnings)
    assert bins(out) == b_bins
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images_dir"] == str(b.resolve())
    for entry in manifest["files"]:
        data = (b / entry["source"]).read_bytes()
        assert entry["source_sha256"] == hashlib.sha256(data).hexdigest() and entry["source_size"] == len(data)
    assert run(b, out).reused == 5


def test_an_image_edited_in_place_is_converted_again(tmp_path, a_and_b):
    a, b, b_bins = a_and_b
    out = tmp_path / "X"
    age(a)
    run(a, out)
    name = sorted(os.listdir(a))[2]
    shutil.copyfile(b / name, a / name)  # the edit: other content, a new mtime
    again = run(a, out)
    assert (again.written, again.reused) == (1, 4)
    assert bins(out)[name.replace(".JPEG", ".bin")] == b_bins[name.replace(".JPEG", ".bin")]


def test_an_edit_keeping_size_and_mtime_within_the_clock_tick_is_caught_by_content(tmp_path):
    images = photos(tmp_path / "A", seed=0)
    out = tmp_path / "X"
    run(images, out)  # the sources were written just now: their mtimes are "racy"
    target = sorted(images.iterdir())[0]
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF  # same size; JPEG data near the end still decodes
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    again = run(images, out)
    assert (again.written, again.reused) == (1, 4)


def test_old_unchanged_sources_are_reused_from_their_stat_alone(tmp_path, monkeypatch):
    images = photos(tmp_path / "A", seed=0)
    age(images)
    out = tmp_path / "X"
    run(images, out)
    monkeypatch.setattr(sources, "sha256_file", lambda path: pytest.fail(f"{path} was read to be reused"))
    assert run(images, out).reused == 5


def test_a_moved_image_folder_is_reused_by_content(tmp_path):
    images = photos(tmp_path / "A", seed=0)
    out = tmp_path / "X"
    run(images, out)
    before = bins(out)
    moved = images.rename(tmp_path / "moved")
    again = run(moved, out)
    assert (again.written, again.reused) == (0, 5) and bins(out) == before
    assert json.loads((out / "manifest.json").read_text())["images_dir"] == str(moved.resolve())


def test_a_manifest_without_source_records_reuses_nothing(tmp_path):
    images = photos(tmp_path / "A", seed=0)
    out = tmp_path / "X"
    run(images, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = [{"source": f["source"], "bin": f["bin"]} for f in manifest["files"]]  # an older focalinfer
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = run(images, out)
    assert (again.written, again.reused) == (5, 0)
    assert run(images, out).reused == 5


def test_the_journal_of_a_killed_run_is_trusted_line_by_line(tmp_path):
    images = photos(tmp_path / "A", seed=0)
    out = tmp_path / "X"
    run(images, out)
    manifest = json.loads((out / "manifest.json").read_text())
    records = [json.dumps({"bin": f["bin"], "path": str(images.resolve() / f["source"]), "size": f["source_size"],
                           "mtime_ns": f["source_mtime_ns"], "sha256": f["source_sha256"]}) for f in manifest["files"]]
    # as a kill -9 leaves it: the manifest says running, 3 lines recorded, the 4th torn
    (out / "manifest.json").write_text(json.dumps({**manifest, "files": [], "status": "running"}))
    (out / JOURNAL).write_text("\n".join(records[:3]) + "\n" + records[3][:40])
    again = run(images, out)
    assert (again.written, again.reused) == (2, 3)
    assert not (out / JOURNAL).exists()
    assert sorted(os.listdir(out)) == sorted([*(f["bin"] for f in manifest["files"]), "manifest.json"])
