"""ImageFolder input (issue 10, rule 4): synset folders get ImageNet's class index, other names
their sorted position (with a warning when the count is not the model's), nested sub-folders are
walked as torchvision's ImageFolder walks them, and a flat folder mixed with class folders is an
error. Images come from `focalinfer sample-data`."""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from click.testing import CliRunner
from clitools import error_line, run
from focalinfer.cli import cli
from focalinfer.imagenet import imagenet_synsets, synset_class_index
from focalinfer.preprocess.discover import IMAGE_EXTENSIONS, discover_images
from focalinfer.samples import make_sample_set


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Path]:
    """Eight images as `focalinfer sample-data` writes them (JPEG, grey, CMYK, PNG-in-JPEG)."""
    out = tmp_path_factory.mktemp("samples")
    assert CliRunner().invoke(cli, ["sample-data", "--out", str(out), "--count", "8"]).exit_code == 0
    return sorted(out.glob("*.JPEG"))


def tree(root: Path, samples: list[Path], layout: dict[str, int]) -> Path:
    """``layout``: relative file path → which sample image to copy there."""
    for rel, k in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples[k], root / rel)
    return root

def test_shipped_synset_list_is_the_ilsvrc2012_index():
    wnids = imagenet_synsets()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    # spot checks against Keras' imagenet_class_index.json (see data/IMAGENET_SYNSETS_SOURCE.md)
    assert synset_class_index()["n01443537"] == 1  # goldfish
    assert synset_class_index()["n04370456"] == 841  # sweatshirt
    assert synset_class_index()["n06359193"] == 916  # web site
    data = resources.files("focalinfer").joinpath("data")
    assert data.joinpath("IMAGENET_SYNSETS_SOURCE.md").is_file()


def test_a_subset_of_synset_folders_gets_imagenets_class_index(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {
        "n15075141/a.JPEG": 0, "n01443537/b.JPEG": 1, "n01443537/c.JPEG": 2, "n04370456/d.JPEG": 3,
    })
    labels = tmp_path / "val_label.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    # sorted positions would have been 0, 0, 1, 2
    assert labels.read_text() == "b.JPEG 1\nc.JPEG 1\nd.JPEG 841\na.JPEG 999\n"
    manifest = json.loads((tmp_path / "bin" / "manifest.json").read_text())
    assert manifest["class_index"] == "imagenet-synsets"
    assert [(f["source"], f["label"]) for f in manifest["files"]] == [
        ("n01443537/b.JPEG", 1), ("n01443537/c.JPEG", 1), ("n04370456/d.JPEG", 841), ("n15075141/a.JPEG", 999)]


def test_other_folder_names_get_sorted_positions_and_a_count_warning(tmp_path, samples):
    root = tree(tmp_path / "pets", samples, {"dog/a.JPEG": 0, "cat/b.JPEG": 1, "emu/c.JPEG": 2})
    labels = tmp_path / "labels.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
    assert result.exit_code == 0, result.output
    assert labels.read_text() == "b.JPEG 0\na.JPEG 1\nc.JPEG 2\n"
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "3 class folders for a 1000-class model" in warning[0]
    assert json.loads((tmp_path / "bin" / "manifest.json").read_text())["class_index"] == "sorted-folders"
    # the count matches the model's: no warning
    assert discover_images(root, num_classes=3).warnings == []


@pytest.mark.parametrize("others", [["misc"], ["n99999999"]])
def test_synsets_mixed_with_other_names_are_an_error(tmp_path, samples, others):
    root = tree(tmp_path / "val", samples, {"n01440764/a.JPEG": 0, **{f"{o}/b.JPEG": 1 for o in others}})
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--quiet")
    assert result.exit_code == 1
    line = error_line(result)
    assert str(root) in line and "n01440764" in line and others[0] in line and "rename or remove" in line
    assert not (tmp_path / "bin").exists()


def torchvision_make_dataset(root: Path) -> list[tuple[str, int]]:
    """torchvision.datasets.folder.find_classes + make_dataset, restated (torchvision is not installed)."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    samples = []
    for index, cls in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((str(Path(dirpath, fname).relative_to(root)), index))
    return samples


def test_nested_sub_folders_are_walked_as_imagefolder_does(tmp_path, samples):
    root = tree(tmp_path / "train", samples, {
        "a_cls/top.JPEG": 0, "a_cls/sub/x1.JPEG": 1, "a_cls/sub/deeper/x2.JPEG": 2, "a_cls/sub-b/x3.JPEG": 3,
        "a_cls/sub.b/x4.JPEG": 4, "b_cls/y.JPEG": 5, "b_cls/z/y2.JPEG": 6,
    })
    found = discover_images(root)
    assert [(str(i.source.relative_to(root)), i.label) for i in found.items] == torchvision_make_dataset(root)
    assert len(found.items) == 7
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", tmp_path / "l.txt",
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert "7 images" in result.output
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == \
        ["top.bin", "x1.bin", "x2.bin", "x3.bin", "x4.bin", "y.bin", "y2.bin"]


def test_nested_name_clashes_are_renamed_by_folder_path(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {
        "n01440764/a/img.JPEG": 0, "n01440764/b/img.JPEG": 1, "n01443537/img.JPEG": 2,
    })
    refused = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--quiet")
    assert refused.exit_code == 1 and "--rename" in error_line(refused)
    labels = tmp_path / "labels.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels,
                 "--rename", "--quiet")
    assert result.exit_code == 0, result.output
    assert labels.read_text() == \
        "n01440764_a_img.JPEG 0\nn01440764_b_img.JPEG 0\nn01443537_img.JPEG 1\n"


def test_hidden_folders_and_empty_classes_are_listed_not_dropped_silently(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {
        "n01440764/a.JPEG": 0, "n01440764/.ipynb_checkpoints/a-checkpoint.JPEG": 1, ".cache/c.JPEG": 2,
    })
    (root / "n01443537").mkdir()
    found = discover_images(root)
    assert [i.name for i in found.items] == ["a.JPEG"]
    assert dict(found.ignored) == {
        ".cache/": "hidden folder",
        "n01440764/.ipynb_checkpoints/": "hidden folder",
        "n01443537/": "class folder with no images (class 1)",
    }


def test_flat_folder_mixed_with_class_folders_is_an_error(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {"top1.JPEG": 0, "top2.JPEG": 1, "n01440764/a.JPEG": 2})
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--quiet")
    assert result.exit_code == 1
    line = error_line(result)
    assert "2 images at the top level and 1 sub-folders with images (n01440764)" in line
    assert not (tmp_path / "bin").exists()


def test_flat_folder_with_a_folder_of_no_images_stays_flat(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {"top1.JPEG": 0, "top2.JPEG": 1})
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("x")
    found = discover_images(root)
    assert found.layout == "flat" and [i.name for i in found.items] == ["top1.JPEG", "top2.JPEG"]
    assert ("notes/", "sub-folder with no images, beside the images of a flat folder") in found.ignored


# --- issue 22: links, clashing extensions, Unicode forms ------------------------------------


def test_symlink_cycles_are_walked_once_and_reported_in_one_line(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {"n01440764/a.JPEG": 0, "n01440764/sub/b.JPEG": 1, "n01443537/c.JPEG": 2})
    os.symlink("..", root / "n01440764" / "up")
    os.symlink(".", root / "n01440764" / "self")
    os.symlink("../..", root / "n01440764" / "sub" / "loop")
    os.symlink("../n01443537", root / "n01440764" / "other")  # a second way into a folder: followed once
    labels = tmp_path / "labels.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
    assert result.exit_code == 1, result.output  # c.JPEG is reached from two classes: a clash, before any work
    assert "stem 'c' shared by n01440764/other/c.JPEG and n01443537/c.JPEG" in error_line(result)
    (root / "n01440764" / "other").unlink()
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "links lead back" in line]
    assert warnings == [f"warning: {root}: 3 folder links lead back into folders already walked (a symlink cycle "
                        "or a second way in) and were not followed: n01440764/self -> ., n01440764/sub/loop -> ../.., "
                        "n01440764/up -> .."]
    assert labels.read_text() == "a.JPEG 0\nb.JPEG 0\nc.JPEG 1\n"


def test_a_link_to_the_top_folder_is_not_a_class(tmp_path, samples):
    root = tree(tmp_path / "flat", samples, {"a.JPEG": 0, "b.JPEG": 1})
    os.symlink(".", root / "self")
    found = discover_images(root)
    assert found.layout == "flat" and [i.name for i in found.items] == ["a.JPEG", "b.JPEG"]
    assert ("self/", "link to a folder already walked (.): not followed") in found.ignored
    assert len(found.warnings) == 1 and "self -> ." in found.warnings[0]


def test_rename_resolves_one_stem_with_two_extensions(tmp_path, samples):
    root = tree(tmp_path / "flat", samples, {"pic.webp": 0, "pic.tiff": 1, "other.JPEG": 2})
    refused = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--quiet")
    assert refused.exit_code == 1
    assert error_line(refused).endswith("stem 'pic' shared by pic.tiff and pic.webp; rename them, or pass --rename "
                                        "(pic.tiff → pic_tiff.bin, pic.webp → pic_webp.bin)")
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--rename", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == ["other.bin", "pic_tiff.bin", "pic_webp.bin"]
    assert "a label file must name them so (e.g. pic_tiff.tiff)" in result.output


def test_rename_in_a_class_folder_uses_the_folder_then_the_extension(tmp_path, samples):
    root = tree(tmp_path / "val", samples, {"n01440764/pic.png": 0, "n01440764/pic.jpg": 1, "n01443537/pic.jpg": 2})
    labels = tmp_path / "labels.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--rename",
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert labels.read_text() == \
        "n01440764_pic_jpg.jpg 0\nn01440764_pic_png.png 0\nn01443537_pic.jpg 1\n"


def test_rename_is_offered_only_when_it_would_help(tmp_path, samples):
    root = tree(tmp_path / "flat", samples, {"a_b.jpg": 0, "a.b.jpg": 1})  # both become a_b
    refused = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--quiet")
    assert refused.exit_code == 1
    assert "pass --rename" not in error_line(refused)
    assert error_line(refused).endswith("rename the files (--rename would not make them all unique)")
    renamed = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--rename", "--quiet")
    assert renamed.exit_code == 1
    assert error_line(renamed).endswith("rename the files (--rename cannot make these unique)")
    assert not (tmp_path / "bin").exists()


def test_stems_are_nfc_so_a_macos_label_file_meets_them(tmp_path, samples):
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    root = tree(tmp_path / "val", samples, {f"n01440764/{nfd}.JPEG": 0, "n01440764/plain.JPEG": 1})
    labels = tmp_path / "labels.txt"
    result = run("preprocess", "--images", root, "--out", tmp_path / "bin", "--labels-out", labels, "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == sorted([f"{nfc}.bin", "plain.bin"])
    manifest = json.loads((tmp_path / "bin" / "manifest.json").read_text())
    assert {f["source"]: f["bin"] for f in manifest["files"]}[f"n01440764/{nfd}.JPEG"] == f"{nfc}.bin"
