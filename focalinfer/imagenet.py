"""ImageNet-1k facts every stage may need: the 1000 class synsets and their class index."""

from __future__ import annotations

import functools
import re
from importlib import resources

# A WordNet noun id as ImageNet names its class folders: 'n' and eight digits.
SYNSET_PATTERN = re.compile(r"n\d{8}")


@functools.lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 wnids; position = class index (data/IMAGENET_SYNSETS_SOURCE.md)."""
    text = resources.files("focalinfer").joinpath("data/imagenet_synsets.txt").read_text(encoding="utf-8")
    return tuple(text.split())


@functools.lru_cache(maxsize=1)
def synset_class_index() -> dict[str, int]:
    return {wnid: index for index, wnid in enumerate(imagenet_synsets())}


def looks_like_synset(name: str) -> bool:
    return SYNSET_PATTERN.fullmatch(name) is not None
