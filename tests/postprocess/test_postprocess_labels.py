"""The label reader: names keyed in Unicode NFC (issue 22, point 7)."""

from __future__ import annotations

import unicodedata

from focalinfer.postprocess.labels import read_labels


def test_nfd_and_nfc_names_are_one_key(tmp_path):
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    assert nfd != nfc and unicodedata.normalize("NFC", nfd) == nfc
    path = tmp_path / "val_label.txt"
    path.write_text(f"{nfd}.JPEG 3\nplain.JPEG 1\n", encoding="utf-8")  # as macOS writes names
    labels = read_labels(path)
    assert list(labels.labels) == [nfc, "plain"]
    assert labels.labels[nfc].image == f"{nfd}.JPEG" and labels.labels[nfc].target == 3


def test_the_same_name_in_both_forms_is_one_image(tmp_path):
    path = tmp_path / "val_label.txt"
    path.write_text("cafe\u0301.JPEG 3\ncaf\u00e9.JPEG 3\n", encoding="utf-8")
    labels = read_labels(path)
    assert len(labels) == 1 and [d["line"] for d in labels.duplicates] == [2]
