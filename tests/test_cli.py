"""The CLI's promise: a failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner

import focalinfer.pipeline
from focalinfer.cli import cli


def test_an_unforeseen_os_error_is_one_line(monkeypatch, tmp_path):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "result.json"))

    monkeypatch.setattr(focalinfer.pipeline, "evaluate", full_disk)
    labels = tmp_path / "val_label.txt"
    labels.write_text("a.JPEG 1\n")
    res = CliRunner().invoke(cli, ["eval", "--results", str(tmp_path), "--labels", str(labels)])
    assert res.exit_code == 1
    assert res.output.strip() == (f"focalinfer: error: {tmp_path / 'result.json'}: No space left on device; "
                                  "check the path, its permissions and free disk")
    assert isinstance(res.exception, SystemExit)
