"""The ImageNet label file: ``<image file name> <class index>`` per line, joined to outputs by name.

Lines are read as users write them: the class is the **last** whitespace-separated field and
the name is everything before it, so names may hold spaces (preprocess ``--rename`` keeps
them). A UTF-8 BOM, tabs and CRLF line ends are fine. An output is named after its input up to
the first '.', so a label's key is the name's basename up to its first '.'
(``layout.name_stem``): ``ILSVRC2012_val_00000001.JPEG`` ↔ ``ILSVRC2012_val_00000001_0.txt``,
``my cat.jpg`` ↔ ``my cat_0.txt``. Keys are in Unicode NFC, as preprocess names its files: a
label file written on macOS (NFD: ``e`` + a combining accent) meets ``café.JPEG`` named elsewhere.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.layout import name_stem

# The name is everything up to the last run of whitespace; the class is what follows it.
_LINE = re.compile(r"(?P<name>.*\S)\s+(?P<target>\S+)", re.DOTALL)
# Lines listed in an error message; result.json lists them all.
SHOWN = 3
LABEL_FORMAT = "'<image file name> <class index>'"


@dataclass(frozen=True)
class Label:
    image: str
    target: int
    line: int


@dataclass
class LabelSet:
    path: Path
    labels: dict[str, Label]                       # stem -> label, in file order
    malformed: list[dict] = field(default_factory=list)   # {line, text, reason}: unparsable or out of range
    duplicates: list[dict] = field(default_factory=list)  # {line, image, first_line}
    classes_note: str | None = None    # where the class count out-of-range lines broke comes from
    checked_space: int | None = None   # the label space drop_out_of_range last checked against

    def __len__(self) -> int:
        return len(self.labels)

    def drop_out_of_range(self, label_space: int, classes_note: str | None = None) -> None:
        """Labels naming a class the model does not have become malformed lines, not misses.

        ``classes_note`` says where the model's class count comes from, once, in error messages.
        """
        for stem in [s for s, lab in self.labels.items() if lab.target >= label_space]:
            lab = self.labels.pop(stem)
            self.malformed.append({
                "line": lab.line, "text": f"{lab.image} {lab.target}",
                "reason": f"class {lab.target} is outside the model's 0–{label_space - 1}",
            })
            self.classes_note = classes_note
        self.malformed.sort(key=lambda m: m["line"])
        self.checked_space = label_space

    def require_clean(self, allow_bad_labels: bool) -> None:
        """Refuse to score around unusable lines unless the user allowed it: dropping labelled
        images silently changes Acc@1. No usable line at all is an error either way."""
        note = f"; {self.classes_note}" if self.classes_note else ""
        if self.malformed and not self.labels:
            first = self.malformed[0]
            raise FocalinferError(f"{self.path}: none of its {len(self.malformed)} label lines can be scored "
                                  f"(line {first['line']}: {first['reason']}){note}; is this the label file for "
                                  "this model?")
        if allow_bad_labels or not self.malformed:
            return
        shown = "; ".join(f"line {m['line']}: {m['reason']}" for m in self.malformed[:SHOWN])
        more = f"; and {len(self.malformed) - SHOWN} more" if len(self.malformed) > SHOWN else ""
        raise FocalinferError(
            f"{self.path}: {len(self.malformed)} label lines cannot be scored ({shown}{more}){note}; fix them, or "
            f"pass --allow-bad-labels to score the other {len(self.labels)} labels"
        )


def _parse_line(text: str) -> tuple[str, str, int] | str:
    """(image, stem, class) or the reason the line cannot be used."""
    match = _LINE.fullmatch(text)
    if match is None:
        return f"expected {LABEL_FORMAT}, got one field"
    image, target = match.group("name"), match.group("target")
    try:
        value = int(target)
    except ValueError:
        return f"class index {target!r} (the last field) is not an integer"
    if value < 0:
        return f"class index {value} is negative"
    stem = unicodedata.normalize("NFC", name_stem(image))
    if not stem:
        return f"image name {image!r} has no stem before its first '.'"
    return image, stem, value


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FocalinferError(
            f"{path}: label file not found; pass ImageNet's val_label.txt (or the one preprocess --labels-out wrote)"
        ) from None
    except IsADirectoryError:
        raise FocalinferError(f"{path}: is a directory; --labels takes the val_label.txt file") from None
    except OSError as e:
        raise FocalinferError(f"{path}: label file not readable ({e.strerror or e})") from None
    # utf-8-sig drops a BOM; surrogateescape keeps undecodable bytes as os.listdir() does, so such
    # names still meet the output files they name.
    return data.decode("utf-8-sig", errors="surrogateescape")


def _nameless(malformed: list[dict]) -> bool:
    return all(m["text"].isdigit() for m in malformed)


def read_labels(path: str | os.PathLike) -> LabelSet:
    """Parse ``val_label.txt``.

    Blank lines and ``#`` comments are skipped. Unusable lines are collected (the caller decides
    whether to go on). The same image listed twice with the same class is counted once (and
    reported); with two different classes there is no right answer, so that is an error naming
    both lines. A file with no usable line is an error of its own.
    """
    path = Path(path)
    result = LabelSet(path=path, labels={})
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
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
    if not result.labels:
        _raise_unusable(result)
    return result


def _raise_unusable(result: LabelSet) -> None:
    path, malformed = result.path, result.malformed
    if not malformed:
        raise FocalinferError(f"{path}: label file is empty (no {LABEL_FORMAT} line); pass the val_label.txt "
                              "that lists your images")
    if _nameless(malformed):
        raise FocalinferError(
            f"{path}: holds class indexes without image names (like ImageNet's "
            "ILSVRC2012_validation_ground_truth.txt, whose classes are 1-based and in another order); "
            f"eval needs {LABEL_FORMAT} lines, e.g. ImageNet's val_label.txt"
        )
    first = malformed[0]
    raise FocalinferError(
        f"{path}: none of its {len(malformed)} lines parses as {LABEL_FORMAT} "
        f"(line {first['line']}: {first['reason']}); is this the label file?"
    )
