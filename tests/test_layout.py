"""The ais_bench file contract's pieces a writer in another process relies on: a batch read in one
place and filled in another, and output bytes made in one place and written in another, give what
the one-process path gives."""

from __future__ import annotations

import numpy as np
import pytest

from focalinfer import layout
from focalinfer.errors import FocalinferError


@pytest.fixture()
def files(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / "in" / f"val_{i}.bin"
        path.parent.mkdir(exist_ok=True)
        np.full((2, 3), i + 1, np.float32).tofile(path)
        paths.append(str(path))
    return paths


def test_a_batch_read_here_fills_there_as_its_files_would(files):
    batch = layout.plan_batches(files, 4)[0]  # 3 files and one padding slot
    from_files, from_data = np.empty((4, 2, 3), np.float32), np.empty((4, 2, 3), np.float32)
    layout.fill_batch(from_files, batch, 24)
    data = layout.read_batch(batch, 24)
    assert len(data) == 3 * 24  # the real files only: padding is made where the batch is filled
    layout.fill_batch(from_data, batch, 24, data)
    assert from_data.tobytes() == from_files.tobytes()
    assert (from_data[3] == from_data[0]).all()  # padding repeats the first file
    with pytest.raises(FocalinferError, match="arrived with 24 bytes, not 3 × 24"):
        layout.fill_batch(from_data, batch, 24, data[:24])


@pytest.mark.parametrize("outfmt", layout.OUTFMTS)
def test_output_bytes_made_apart_and_written_here_are_the_written_batch(files, tmp_path, outfmt):
    batch = layout.plan_batches(files, 4)[0]
    outputs = [np.arange(4 * 5, dtype=np.float32).reshape(4, 5), np.arange(4, dtype=np.int64).reshape(4, 1)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    direct = layout.write_batch_outputs(batch, outputs, str(tmp_path / "a"), outfmt)
    named = layout.batch_output_bytes(batch, outputs, outfmt)
    assert [[name for name, _ in files_] for files_ in named] == \
        [[f"val_{i}_{k}.{outfmt.lower()}" for k in range(2)] for i in range(3)]  # none for the padding slot
    apart = layout.write_output_files(str(tmp_path / "b"), named)
    assert [[p.rsplit("/", 1)[1] for p in paths] for paths in apart] == \
        [[p.rsplit("/", 1)[1] for p in paths] for paths in direct]
    for name in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
