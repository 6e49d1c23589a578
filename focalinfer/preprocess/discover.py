"""Finding the images to preprocess: a flat folder (ImageNet val) or class sub-folders.

ais_bench names every output after its input's basename up to the first '.', and eval joins
outputs to labels by that stem, so each image needs a unique stem without dots. Problems are
found here, before anything is written.

Class sub-folders are read as torchvision's ``ImageFolder`` reads them: the classes are the
top-level folders, and each class takes the images anywhere below its folder (``os.walk`` in
sorted order). Class indices: folders named by ImageNet synset (``n01440764`` …) get ImageNet's
own index, so a subset of the 1000 folders is labelled right; other names get their position in
sorted order, as ImageFolder does.
"""

from __future__ import annotations

import dataclasses
import os
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from focalinfer.errors import FocalinferError
from focalinfer.imagenet import looks_like_synset, synset_class_index
from focalinfer.layout import name_stem

# torchvision's IMG_EXTENSIONS: what the official ImageFolder would pick up.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SHOW = 5
SYNSET_INDEX = "imagenet-synsets"  # class index = ImageNet's index of the folder's synset
SORTED_INDEX = "sorted-folders"  # class index = position of the folder name in sorted order


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
    class_index: str | None = None  # SYNSET_INDEX | SORTED_INDEX (class-folder layout only)
    warnings: list[str] = field(default_factory=list)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _take(path: Path, root: Path, images: list, ignored: list) -> None:
    rel = str(path.relative_to(root))
    if _is_hidden(path):
        ignored.append((rel, "hidden file"))
    elif _is_image_name(path):
        images.append(path)
    else:
        ignored.append((rel, f"not an image file name ({', '.join(IMAGE_EXTENSIONS)})"))


def _scan_top(root: Path, ignored: list, links: list) -> tuple[list[Path], list[Path]]:
    """(images at the top level, visible sub-folders); hidden sub-folders are listed as ignored."""
    images, folders = [], []
    root_key = _folder_key(root)
    for path in sorted(root.iterdir()):
        if path.is_dir() and _is_hidden(path):
            ignored.append((path.name + "/", "hidden folder"))
        elif path.is_dir() and _folder_key(path) == root_key:  # `self -> .`: the top folder again
            _skip_link(path, root, ignored, links)
        elif path.is_dir():
            folders.append(path)
        else:
            _take(path, root, images, ignored)
    return images, folders


def _folder_key(path: Path) -> tuple[int, int]:
    """What a folder is, however it is reached (through links or not)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _skip_link(path: Path, root: Path, ignored: list, links: list) -> None:
    """A link into a folder the walk already took: following it again would repeat (or, back
    into an ancestor, never end) the walk."""
    rel = str(path.relative_to(root))
    target = os.readlink(path) if path.is_symlink() else "?"
    ignored.append((rel + "/", f"link to a folder already walked ({target}): not followed"))
    links.append(f"{rel} -> {target}")


def _walk(folder: Path, root: Path, ignored: list, links: list) -> list[Path]:
    """Every image below ``folder``, in torchvision's order: sorted(os.walk(...)), then sorted names.

    Links are followed as ImageFolder follows them, but into each folder once: a link back into
    a folder already walked (``up -> ..``, ``self -> .``) is skipped and listed in ``links``.
    """
    images: list[Path] = []
    seen = {_folder_key(root)}
    pending = [folder]
    while pending:
        here = pending.pop()
        key = _folder_key(here)
        if key in seen:
            _skip_link(here, root, ignored, links)
            continue
        seen.add(key)
        subfolders = []
        for entry in sorted(os.scandir(here), key=lambda e: e.name):
            path = Path(entry.path)
            if not entry.is_dir():
                _take(path, root, images, ignored)
            elif entry.name.startswith("."):
                ignored.append((str(path.relative_to(root)) + "/", "hidden folder"))
            else:
                subfolders.append(path)
        pending += reversed(subfolders)  # depth first, in name order
    return sorted(images, key=lambda p: (str(p.parent), p.name))


def discover_images(root: str | Path, num_classes: int | None = None) -> ImageSet:
    """The images under ``root`` and their labels; ``num_classes``: the model's, for the count warning."""
    root = Path(root)
    if not root.exists():
        raise FocalinferError(f"{root}: image folder not found; pass --images with the ImageNet val folder")
    if not root.is_dir():
        raise FocalinferError(f"{root}: not a folder; pass --images with a folder of images or class sub-folders")
    ignored: list[tuple[str, str]] = []
    links: list[str] = []
    top_images, folders = _scan_top(root, ignored, links)
    per_folder = {folder: _walk(folder, root, ignored, links) for folder in folders}
    with_images = [folder.name for folder in folders if per_folder[folder]]
    if top_images and with_images:
        raise FocalinferError(
            f"{root}: holds {len(top_images)} images at the top level and {len(with_images)} sub-folders with "
            f"images ({_names(with_images)}); pass a flat folder of images or a folder of class sub-folders, not both"
        )
    if top_images:
        ignored += [(folder.name + "/", "sub-folder with no images, beside the images of a flat folder")
                    for folder in folders]
        items = [ImageItem(p, p.name, output_stem(p.name), None) for p in top_images]
        found = ImageSet(root, "flat", items, [], ignored)
    else:
        found = _class_folders(root, folders, per_folder, ignored, num_classes)
    if not found.items:
        raise FocalinferError(
            f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}, flat or in class sub-folders)"
        )
    if links:
        found.warnings.append(
            f"{root}: {len(links)} folder links lead back into folders already walked (a symlink cycle or a "
            f"second way in) and were not followed: {_names(links)}"
        )
    return found


def _class_folders(root: Path, folders: list[Path], per_folder: dict, ignored: list,
                   num_classes: int | None) -> ImageSet:
    classes = [folder.name for folder in folders]
    class_index, labels, warnings = _class_labels(root, classes, num_classes)
    items = []
    for folder, label in zip(folders, labels):
        if not per_folder[folder]:
            ignored.append((folder.name + "/", f"class folder with no images (class {label})"))
        items += [ImageItem(p, p.name, output_stem(p.name), label) for p in per_folder[folder]]
    return ImageSet(root, "class-folders", items, classes, ignored, class_index, warnings)


def _class_labels(root: Path, classes: list[str], num_classes: int | None) -> tuple[str, list[int], list[str]]:
    """(rule, class index per folder, warnings): ImageNet's index for synset folders, else sorted position."""
    index = synset_class_index()
    synsets = [c for c in classes if c in index]
    if synsets:
        others = [c for c in classes if c not in index]
        if others:
            kind = "WordNet ids outside ImageNet-1k" if all(map(looks_like_synset, others)) else "other names"
            raise FocalinferError(
                f"{root}: class folders mix ImageNet synsets ({_names(synsets)}) with {kind} ({_names(others)}); "
                "synset folders get ImageNet's class index and other names their sorted position, which cannot "
                "be mixed: rename or remove the others"
            )
        warnings = []
        if num_classes is not None and num_classes != len(index):
            warnings.append(f"{root}: class folders are ImageNet synsets (ImageNet-1k class index), "
                            f"but the model has {num_classes} classes")
        return SYNSET_INDEX, [index[c] for c in classes], warnings
    warnings = []
    if num_classes is not None and len(classes) != num_classes:
        warnings.append(
            f"{root}: {len(classes)} class folders for a {num_classes}-class model, and they are not ImageNet "
            f"synset ids (n01440764 …): labels are the folders' sorted positions 0–{len(classes) - 1}, right "
            "only if the folders are the model's first classes in its order"
        )
    return SORTED_INDEX, list(range(len(classes))), warnings


def _names(names: list[str]) -> str:
    more = f", +{len(names) - SHOW} more" if len(names) > SHOW else ""
    return ", ".join(names[:SHOW]) + more


def output_stem(name: str) -> str:
    """The stem a .bin gets: ais_bench's (up to the first '.'), in Unicode NFC, as the label reader
    keys names, so a label file typed on macOS (NFD) meets files named elsewhere (NFC)."""
    return unicodedata.normalize("NFC", name_stem(name))


def _renamed_stem(item: ImageItem) -> str:
    return unicodedata.normalize("NFC", item.name.rsplit(".", 1)[0].replace(".", "_"))


def check_stems(images: ImageSet, rename: bool) -> ImageSet:
    """Unique, dot-free stems, or an error listing the offenders (``rename`` fixes them instead)."""
    renamed = _renamed(images.items, images.root)
    items = renamed if rename else images.items
    problems = _problems(items, images.root)
    if problems:
        more = f" (+{len(problems) - SHOW} more)" if len(problems) > SHOW else ""
        raise FocalinferError(
            f"{images.root}: {len(problems)} image names do not give unique dot-free output stems: "
            f"{'; '.join(problems[:SHOW])}{more}; {_stem_fix(images, renamed, rename)}"
        )
    warnings = list(images.warnings)
    changed = [(old, i) for i, old in zip(items, images.items) if i.stem != old.stem]
    if changed and images.layout == "flat":  # no label file of ours: the user's must follow
        shown = _names([f"{old.name} → {new.stem}.bin" for old, new in changed])
        warnings.append(f"{images.root}: --rename gave {len(changed)} images new stems ({shown}); a label file must "
                        f"name them so (e.g. {changed[0][1].name}): the manifest lists each source and its .bin")
    return dataclasses.replace(images, items=items, warnings=warnings)


def _problems(items: list[ImageItem], root: Path) -> list[str]:
    problems = [
        f"{i.source.relative_to(root)} (ais_bench would name its outputs '{i.stem}_0')"
        for i in items if i.name.count(".") > 1
    ]
    return problems + _collisions(items, root)


def _stem_fix(images: ImageSet, renamed: list[ImageItem], rename: bool) -> str:
    """What to do: --rename only when it resolves every problem."""
    if rename or _problems(renamed, images.root):
        return "rename the files (--rename cannot make these unique)" if rename else \
            "rename the files (--rename would not make them all unique)"
    changes = [f"{old.source.relative_to(images.root)} → {new.stem}.bin"
               for new, old in zip(renamed, images.items) if new.stem != old.stem]
    return f"rename them, or pass --rename ({_names(changes)})"


def _renamed(items: list[ImageItem], root: Path) -> list[ImageItem]:
    """--rename: dots become '_', clashing stems get their folder path in front and, when they
    still clash (one folder holding a.jpg and a.png), their extension behind."""
    items = [ImageItem(i.source, i.name, _renamed_stem(i), i.label) for i in items]
    items = _prefix_colliding(items, root)
    items = _suffix_colliding(items)
    # The label file must name what eval will look for: the new stem, the old extension.
    return [ImageItem(i.source, i.stem + Path(i.name).suffix, i.stem, i.label) for i in items]


def _collisions(items: list[ImageItem], root: Path) -> list[str]:
    by_stem = defaultdict(list)
    for i in items:
        by_stem[i.stem].append(str(i.source.relative_to(root)))
    return [f"stem '{s}' shared by {' and '.join(paths)}" for s, paths in by_stem.items() if len(paths) > 1]


def _stem_counts(items: list[ImageItem]) -> dict[str, int]:
    counts = defaultdict(int)
    for i in items:
        counts[i.stem] += 1
    return counts


def _prefix_colliding(items: list[ImageItem], root: Path) -> list[ImageItem]:
    """Clashing stems get their folder path in front: n01/a.JPEG → n01_a, n01/x/a.JPEG → n01_x_a."""
    counts = _stem_counts(items)
    return [
        ImageItem(i.source, i.name, f"{_folder_prefix(i.source, root)}_{i.stem}", i.label)
        if counts[i.stem] > 1 and i.source.parent != root
        else i
        for i in items
    ]


def _suffix_colliding(items: list[ImageItem]) -> list[ImageItem]:
    """Stems still clashing get their extension behind: pic.webp → pic_webp, pic.tiff → pic_tiff."""
    counts = _stem_counts(items)
    return [
        ImageItem(i.source, i.name, f"{i.stem}_{i.source.suffix[1:].lower()}", i.label) if counts[i.stem] > 1 else i
        for i in items
    ]


def _folder_prefix(source: Path, root: Path) -> str:
    return "_".join(source.parent.relative_to(root).parts).replace(".", "_")
