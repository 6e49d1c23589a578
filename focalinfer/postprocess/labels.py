"""The ImageNet label file: ``<image file name> <class index>`` per line, joined to outputs by name.

An output is named after its input up to the first '.', so a label line's key is the image file
name's basename up to its first '.': ``ILSVRC2012_val_00000001.JPEG`` ↔ ``ILSVRC2012_val_00000001_0.txt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.layout import name_stem


@dataclass(frozen=True)
class Label:
    image: str
    target: int
    line: int


@dataclass
class LabelSet:
    path: Path
    labels: dict[str, Label]                       # stem -> label, in file order
    malformed: list[dict] = field(default_factory=list)   # {line, text, reason}
    duplicates: list[dict] = field(default_factory=list)  # {line, image, first_line}

    def __len__(self) -> int:
        return len(self.labels)


def _parse_line(text: str) -> tuple[str, str, int] | str:
    """(image, stem, class) or the reason the line is malformed."""
    fields = text.split()
    if len(fields) != 2:
        return f"expected '<image file name> <class index>', got {len(fields)} fields"
    image, target = fields
    try:
        value = int(target)
    except ValueError:
        return f"class index {target!r} is not an integer"
    if value < 0:
        return f"class index {value} is negative"
    stem = name_stem(image)
    if not stem:
        return f"image name {image!r} has no stem before its first '.'"
    return image, stem, value


def read_labels(path: str | os.PathLike) -> LabelSet:
    """Parse ``val_label.txt``.

    Blank lines and ``#`` comments are skipped. Malformed lines are collected, not fatal. The same
    image listed twice with the same class is counted once (and reported); with two different
    classes there is no right answer, so that is an error naming both lines.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FocalinferError(
            f"{path}: label file not found; pass ImageNet's val_label.txt (or the one preprocess --labels-out wrote)"
        ) from None
    except IsADirectoryError:
        raise FocalinferError(f"{path}: is a directory; --labels takes the val_label.txt file") from None
    result = LabelSet(path=path, labels={})
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _parse_line(line)
        if isinstance(parsed, str):
            result.malformed.append({"line": number, "text": line[:200], "reason": parsed})
            continue
        image, stem, target = parsed
        earlier = result.labels.get(stem)
        if earlier is None:
            result.labels[stem] = Label(image, target, number)
        elif earlier.target == target:
            result.duplicates.append({"line": number, "image": image, "first_line": earlier.line})
        else:
            raise FocalinferError(
                f"{path}:{number}: {image} has class {target} but line {earlier.line} gave "
                f"{earlier.image} class {earlier.target} (same name up to the first '.'); "
                "remove one of the two lines"
            )
    return result
