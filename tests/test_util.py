"""Small shared helpers."""

import hashlib
import os

from focalinfer.util import sha256_file


def test_sha256_is_kept_only_while_the_file_is_unchanged(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"first")
    assert sha256_file(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"other")  # same size, new mtime
    os.utime(path, ns=(1, 10**9))
    assert sha256_file(path) == hashlib.sha256(b"other").hexdigest()
    path.write_bytes(b"longer content")
    assert sha256_file(path) == hashlib.sha256(b"longer content").hexdigest()
