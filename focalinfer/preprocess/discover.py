"""Finding the images to preprocess: a flat folder (ImageNet val) or class sub-folders.

ais_bench names every output after its input's basename up to the first '.', and eval joins
outputs to labels by that stem, so each image needs a unique stem without dots. Problems are
found here, before anything is written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.layout import name_stem

# torchvision's IMG_EXTENSIONS: what the official ImageFolder would pick up.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SHOW = 5


@dataclass(frozen=True)
class ImageItem:
    source: Path  # the image file
    name: str  # the file name as val_label.txt lists it
    stem: str  # output stem: <stem>.bin, and ais_bench's <stem>_0.txt
    label: int | None  # class index (class-folder layout only)


@dataclass(frozen=True)
class ImageSet:
    root: Path
    layout: str  # 'flat' | 'class-folders'
    items: list[ImageItem]
    classes: list[str]
    ignored: list[tuple[str, str]]  # (relative path, why it was not taken)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _scan(folder: Path, root: Path, ignored: list) -> list[Path]:
    images = []
    for path in sorted(folder.iterdir()):
        rel = str(path.relative_to(root))
        if _is_hidden(path):
            ignored.append((rel, "hidden file"))
        elif path.is_dir():
            continue
        elif _is_image_name(path):
            images.append(path)
        else:
            ignored.append((rel, f"not an image file name ({', '.join(IMAGE_EXTENSIONS)})"))
    return images


def discover_images(root: str | Path) -> ImageSet:
    root = Path(root)
    if not root.exists():
        raise FocalinferError(f"{root}: image folder not found; pass --images with the ImageNet val folder")
    if not root.is_dir():
        raise FocalinferError(f"{root}: not a folder; pass --images with a folder of images or class sub-folders")
    ignored: list[tuple[str, str]] = []
    top_images = _scan(root, root, ignored)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p))
    if class_dirs and not top_images:
        items, classes = [], [d.name for d in class_dirs]
        for index, folder in enumerate(class_dirs):
            for path in _scan(folder, root, ignored):
                items.append(ImageItem(path, path.name, name_stem(path.name), index))
        layout = "class-folders"
    else:
        for d in class_dirs:
            ignored.append((d.name + "/", "sub-folder beside images at the top level (flat layout)"))
        items = [ImageItem(p, p.name, name_stem(p.name), None) for p in top_images]
        classes, layout = [], "flat"
    if not items:
        raise FocalinferError(
            f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}, flat or in class sub-folders)"
        )
    return ImageSet(root, layout, items, classes, ignored)


def _renamed_stem(item: ImageItem) -> str:
    return item.name.rsplit(".", 1)[0].replace(".", "_")


def check_stems(images: ImageSet, rename: bool) -> ImageSet:
    """Unique, dot-free stems, or an error listing the offenders (``rename`` fixes them instead)."""
    items = images.items
    if rename:
        items = [ImageItem(i.source, i.name, _renamed_stem(i), i.label) for i in items]
        items = _prefix_colliding(items, images.classes)
        # The label file must name what eval will look for: the new stem, the old extension.
        items = [ImageItem(i.source, i.stem + Path(i.name).suffix, i.stem, i.label) for i in items]
    problems = [
        f"{i.source.relative_to(images.root)} (ais_bench would name its outputs '{i.stem}_0')"
        for i in items if i.name.count(".") > 1
    ]
    problems += _collisions(items, images.root)
    if problems:
        more = f" (+{len(problems) - SHOW} more)" if len(problems) > SHOW else ""
        raise FocalinferError(
            f"{images.root}: {len(problems)} image names do not give unique dot-free output stems: "
            f"{'; '.join(problems[:SHOW])}{more}; rename them or pass --rename"
        )
    return ImageSet(images.root, images.layout, items, images.classes, images.ignored)


def _collisions(items: list[ImageItem], root: Path) -> list[str]:
    by_stem = defaultdict(list)
    for i in items:
        by_stem[i.stem].append(str(i.source.relative_to(root)))
    return [f"stem '{s}' shared by {' and '.join(paths)}" for s, paths in by_stem.items() if len(paths) > 1]


def _prefix_colliding(items: list[ImageItem], classes: list[str]) -> list[ImageItem]:
    counts = defaultdict(int)
    for i in items:
        counts[i.stem] += 1
    return [
        ImageItem(i.source, i.name, f"{classes[i.label].replace('.', '_')}_{i.stem}", i.label)
        if counts[i.stem] > 1 and i.label is not None
        else i
        for i in items
    ]
