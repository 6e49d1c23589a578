"""preprocess: bit-exact official transform, every odd input, resume, and the CLI's errors.

The reference below is written independently of focalinfer.preprocess: sizes and crop offsets are
worked out by hand in the test tables, and ToTensor/Normalize are the torch operations torchvision
runs (``float().div(255)``, ``sub_(mean).div_(std)``) rather than the lookup table the
implementation uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from focalinfer.cli import cli
from focalinfer.preprocess import preprocess
from focalinfer.preprocess.transform import ImageTransform, crop_offsets, resized_size
from focalinfer.registry import get_model_spec

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def reference(img: Image.Image, size: tuple[int, int], offset: tuple[int, int], crop: int,
              mean=IMAGENET[0], std=IMAGENET[1], resample=Image.Resampling.BICUBIC) -> np.ndarray:
    img = img.convert("RGB")
    if img.size != size:
        img = img.resize(size, resample)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    left, top = offset
    x = x[:, top:top + crop, left:left + crop].float().div(255)
    x = x.sub_(torch.tensor(mean, dtype=torch.float32)[:, None, None])
    x = x.div_(torch.tensor(std, dtype=torch.float32)[:, None, None])
    return x.unsqueeze(0).numpy()


def noise_image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    # smooth structure + noise, so resampling has something to do
    return rgb.convert(mode) if mode != "RGB" else rgb


def save_jpeg(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90, **kw)
    return path


def read_bin(path: Path, crop: int) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(1, 3, crop, crop)


# (width, height) → hand-computed resized (w, h) and center-crop (left, top) for resize 256, crop 224
HAND_CASES_256 = [
    ((500, 375), (341, 256), (58, 16)),   # landscape; (341-224)/2 = 58.5 rounds to even 58
    ((375, 500), (256, 341), (16, 58)),   # portrait
    ((333, 257), (331, 256), (54, 16)),   # 256*333/257 = 331.7 → 331; 53.5 rounds to 54
    ((100, 80), (320, 256), (48, 16)),    # tiny, smaller than the crop: upscaled
    ((256, 256), (256, 256), (16, 16)),   # already the right size: no resize at all
    ((225, 999), (256, 1136), (16, 456)),  # 256*999/225 = 1136.6 → 1136
    ((31, 17), (466, 256), (121, 16)),    # 256*31/17 = 466.8 → 466; 121.0
]


@pytest.mark.parametrize("src,size,offset", HAND_CASES_256)
def test_sizes_and_offsets_match_hand_computation(src, size, offset):
    t = get_model_spec("focal-fast-s").default_transform
    assert resized_size(*src, t) == size
    assert crop_offsets(*size, t.crop) == offset


@pytest.mark.parametrize("src,size,offset", HAND_CASES_256)
def test_transform_is_bit_exact_with_torchvision_ops(src, size, offset):
    img = noise_image(*src, seed=src[0])
    got = ImageTransform(get_model_spec("focal-fast-s").default_transform)(img)
    want = reference(img, size, offset, 224)
    assert got.dtype == np.float32 and got.shape == (1, 3, 224, 224) and got.flags.c_contiguous
    assert np.array_equal(got, want)


def test_float64_normalisation_agrees_to_float32_precision():
    img = noise_image(300, 200, seed=3)
    got = ImageTransform(get_model_spec("twins-altgvt-s").default_transform)(img)
    px = np.asarray(img.resize((384, 256), Image.Resampling.BICUBIC), dtype=np.float64)[16:240, 80:304]
    want = (px / 255.0 - np.array(IMAGENET[0])) / np.array(IMAGENET[1])
    assert np.abs(got[0].transpose(1, 2, 0) - want).max() < 2e-6


def test_evo_levit_384_and_van_transforms():
    img = noise_image(500, 375, seed=7)
    evo = ImageTransform(get_model_spec("evo-levit-256-384").default_transform)(img)
    # resize 438: 438*500/375 = 584 → (584, 438); offsets (100, 27)
    assert np.array_equal(evo, reference(img, (584, 438), (100, 27), 384))
    van = ImageTransform(get_model_spec("van-b2").default_transform)(img)
    # resize 248: 248*500/375 = 330.67 → 330; offsets (53, 12); Inception mean/std 0.5
    assert np.array_equal(van, reference(img, (330, 248), (53, 12), 224, (0.5,) * 3, (0.5,) * 3))


def test_modelzoo_preset_resizes_straight_to_input_bilinear():
    img = noise_image(500, 375, seed=8)
    t = get_model_spec("van-b2").transform("modelzoo")
    got = ImageTransform(t)(img)
    want = reference(img, (224, 224), (0, 0), 224, (0.5,) * 3, (0.5,) * 3, Image.Resampling.BILINEAR)
    assert np.array_equal(got, want)


MODES = ["L", "LA", "P", "RGBA", "CMYK", "I", "I;16", "F", "1"]


@pytest.mark.parametrize("mode", MODES)
def test_odd_modes_convert_exactly_as_pil(tmp_path, mode):
    img = noise_image(301, 203, seed=11)
    if mode == "I;16":  # a real 16-bit greyscale PNG
        odd = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        assert odd.mode == "I;16"
    else:
        odd = img.convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    path = tmp_path / "img" / f"x.{'tif' if fmt == 'TIFF' else fmt.lower()}"
    path.parent.mkdir()
    odd.save(path, format=fmt)
    res = preprocess("focal-fast-s", path.parent, tmp_path / "out", workers=1, progress=False)
    assert res.written == 1 and not res.skipped
    reloaded = Image.open(path)
    want = reference(reloaded, (379, 256), (78, 16), 224)  # 256*301/203 = 379.6; 77.5 rounds to 78
    assert np.array_equal(read_bin(tmp_path / "out" / "x.bin", 224), want)


def test_exif_orientation_is_ignored_like_the_official_loader(tmp_path):
    img = noise_image(320, 240, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" — the official pil_loader does not apply it
    path = save_jpeg(tmp_path / "img" / "rot.JPEG", img, exif=exif.tobytes())
    preprocess("focal-fast-s", tmp_path / "img", tmp_path / "out", workers=1, progress=False)
    want = reference(Image.open(path), (341, 256), (58, 16), 224)  # landscape sizes, not rotated
    assert np.array_equal(read_bin(tmp_path / "out" / "rot.bin", 224), want)


def test_png_content_named_jpeg_is_decoded(tmp_path):
    img = noise_image(260, 300, seed=9)
    path = tmp_path / "img" / "png.JPEG"
    path.parent.mkdir()
    img.save(path, format="PNG")
    preprocess("focal-fast-s", path.parent, tmp_path / "out", workers=1, progress=False)
    want = reference(img, (256, 295), (16, 36), 224)  # 256*300/260 = 295.4; (295-224)/2 = 35.5 → 36
    assert np.array_equal(read_bin(tmp_path / "out" / "png.bin", 224), want)


def make_bad_folder(root: Path) -> Path:
    good = save_jpeg(root / "good.JPEG", noise_image(200, 150))
    (root / "zero.JPEG").write_bytes(b"")
    (root / "random.JPEG").write_bytes(os.urandom(2048))
    (root / "truncated.JPEG").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "README.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\1")
    return root


def test_undecodable_files_are_skipped_and_listed(tmp_path):
    root = make_bad_folder(tmp_path / "img")
    res = preprocess("focal-fast-s", root, tmp_path / "out", workers=2, progress=False)
    assert res.written == 1
    assert sorted(name for name, _ in res.skipped) == ["random.JPEG", "truncated.JPEG", "zero.JPEG"]
    assert {name for name, _ in res.ignored} == {"README.txt", ".DS_Store"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"found": 4, "written": 1, "reused": 0, "skipped": 3, "ignored": 2}
    assert sorted(os.listdir(tmp_path / "out")) == ["good.bin", "manifest.json"]


def run_cli(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert "Traceback" not in result.output
    return result


def test_cli_exit_codes_for_skips(tmp_path):
    root = make_bad_folder(tmp_path / "img")
    result = run_cli("preprocess", "--images", root, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert "3 images could not be decoded" in result.output and "--allow-skips" in result.output
    assert "written 1" in result.output and "skipped 3" in result.output
    again = run_cli("preprocess", "--images", root, "--out", tmp_path / "out", "--quiet", "--allow-skips")
    assert again.exit_code == 0 and "reused 1" in again.output


@pytest.mark.parametrize("case", ["empty", "missing", "file", "unwritable", "only-junk"])
def test_cli_one_line_errors(tmp_path, case):
    images, out = tmp_path / "img", tmp_path / "out"
    if case in ("empty", "unwritable", "only-junk"):
        images.mkdir()
    if case == "only-junk":
        (images / "README.txt").write_text("x")
    if case == "file":
        images.write_text("not a folder")
    if case == "unwritable":
        save_jpeg(images / "a.JPEG", noise_image(64, 64))
        (tmp_path / "blocker").write_text("a file where a folder should be")
        out = tmp_path / "blocker" / "out"  # root ignores chmod, a file in the path does not
    result = run_cli("preprocess", "--images", images, "--out", out, "--quiet")
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith("focalinfer: error")]
    assert len(error_lines) == 1
    assert str(out if case == "unwritable" else images) in error_lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def class_folder(root: Path, layout: dict[str, list[str]]) -> Path:
    for cls, names in layout.items():
        for k, name in enumerate(names):
            save_jpeg(root / cls / name, noise_image(120 + k, 90, seed=k + len(cls)))
    return root


def test_class_folders_write_labels_in_sorted_class_order(tmp_path):
    root = class_folder(tmp_path / "img", {"n02": ["c.JPEG"], "n01": ["a.JPEG", "b.jpg"], "n03": ["d.png"]})
    (root / "n03" / "d.png").unlink()
    Image.new("RGB", (50, 60)).save(root / "n03" / "d.png")
    labels = tmp_path / "val_label.txt"
    res = preprocess("focal-fast-s", root, tmp_path / "out", labels_out=labels, workers=2, progress=False)
    assert res.written == 4
    assert labels.read_text() == "a.JPEG 0\nb.jpg 0\nc.JPEG 1\nd.png 2\n"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["classes"] == ["n01", "n02", "n03"]
    assert [f["bin"] for f in manifest["files"]] == ["a.bin", "b.bin", "c.bin", "d.bin"]


def test_stem_collisions_and_dots_fail_before_writing(tmp_path):
    root = class_folder(tmp_path / "img", {"n01": ["same.JPEG", "x.y.JPEG"], "n02": ["same.JPEG"]})
    result = run_cli("preprocess", "--images", root, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert "n01/x.y.JPEG" in result.output and "stem 'same' shared by n01/same.JPEG and n02/same.JPEG" in result.output
    assert not (tmp_path / "out").exists()


def test_rename_gives_unique_dot_free_stems(tmp_path):
    root = class_folder(tmp_path / "img", {"n01": ["same.JPEG", "x.y.JPEG"], "n02": ["same.JPEG"]})
    labels = tmp_path / "labels.txt"
    res = preprocess("focal-fast-s", root, tmp_path / "out", labels_out=labels, rename=True, workers=1, progress=False)
    assert res.written == 3
    assert sorted(p.name for p in (tmp_path / "out").glob("*.bin")) == ["n01_same.bin", "n02_same.bin", "x_y.bin"]
    assert labels.read_text() == "n01_same.JPEG 0\nx_y.JPEG 0\nn02_same.JPEG 1\n"


def test_rerun_resumes_and_changed_transform_refuses(tmp_path):
    root = tmp_path / "img"
    for k in range(5):
        save_jpeg(root / f"i{k}.JPEG", noise_image(90 + k, 70, seed=k))
    out = tmp_path / "out"
    preprocess("focal-fast-s", root, out, workers=2, progress=False)
    first = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    (out / "i3.bin").unlink()
    res = preprocess("focal-fast-s", root, out, workers=2, progress=False)
    assert (res.written, res.reused) == (1, 4)
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == first
    # twins has the same transform as focal: its bins may be shared
    assert preprocess("twins-altgvt-s", root, out, workers=1, progress=False).reused == 5
    refused = run_cli("preprocess", "--model", "van-b2", "--images", root, "--out", out, "--quiet")
    assert refused.exit_code == 1 and "--force" in refused.output
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == first
    forced = preprocess("van-b2", root, out, workers=1, force=True, progress=False)
    assert forced.written == 5 and json.loads((out / "manifest.json").read_text())["model"] == "van-b2"


def test_foreign_bins_without_manifest_are_not_mixed(tmp_path):
    root = tmp_path / "img"
    save_jpeg(root / "a.JPEG", noise_image(64, 64))
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.bin").write_bytes(b"\0" * 16)
    result = run_cli("preprocess", "--images", root, "--out", out, "--quiet")
    assert result.exit_code == 1 and "unknown origin" in result.output


def test_output_independent_of_worker_count_and_limit(tmp_path):
    root = tmp_path / "img"
    for k in range(12):
        save_jpeg(root / f"ILSVRC2012_val_{k:08d}.JPEG", noise_image(150 + 13 * k, 110 + 7 * k, seed=k))
    one = preprocess("focal-fast-s", root, tmp_path / "one", workers=1, progress=False)
    two = preprocess("focal-fast-s", root, tmp_path / "two", workers=2, progress=False)
    assert one.written == two.written == 12
    for p in (tmp_path / "one").glob("*.bin"):
        assert p.read_bytes() == (tmp_path / "two" / p.name).read_bytes()
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["files"] == \
        json.loads((tmp_path / "two" / "manifest.json").read_text())["files"]
    limited = preprocess("focal-fast-s", root, tmp_path / "lim", limit=3, workers=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "lim").glob("*.bin")) == [f"ILSVRC2012_val_{k:08d}.bin" for k in range(3)]
    assert limited.found == 3


def test_bin_layout_is_raw_little_endian_nchw(tmp_path):
    root = tmp_path / "img"
    img = noise_image(256, 256, seed=1)
    img.save(root.mkdir() or root / "sq.png")
    preprocess("focal-fast-s", root, tmp_path / "out", workers=1, progress=False)
    raw = (tmp_path / "out" / "sq.bin").read_bytes()
    assert len(raw) == 3 * 224 * 224 * 4
    first = np.frombuffer(raw[:4], dtype="<f4")[0]
    r = np.asarray(img)[16, 16, 0]  # channel 0 (R), row 0, col 0 of the crop comes first
    assert first == (np.float32(r) / np.float32(255) - np.float32(0.485)) / np.float32(0.229)
    assert (tmp_path / "out" / "sq.bin").stat().st_mode & 0o777 != 0o600


# --- --dtype uint8: the cropped RGB bytes before ToTensor ----------------------------------


def reference_uint8(img: Image.Image, size: tuple[int, int], offset: tuple[int, int], crop: int,
                    resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """PIL convert + resize, then a numpy slice at the hand-computed offset: (1, C, C, 3) uint8."""
    img = img.convert("RGB")
    if img.size != size:
        img = img.resize(size, resample)
    left, top = offset
    return np.array(img, dtype=np.uint8)[top:top + crop, left:left + crop][None]


def read_u8(path: Path, crop: int) -> np.ndarray:
    raw = path.read_bytes()
    assert len(raw) == crop * crop * 3
    return np.frombuffer(raw, dtype=np.uint8).reshape(1, crop, crop, 3)


def float32_path_of(u8: np.ndarray, mean=IMAGENET[0], std=IMAGENET[1]) -> np.ndarray:
    """torchvision's ToTensor + Normalize on the uint8 NHWC file: what the float32 file must hold."""
    x = torch.from_numpy(u8.copy()).permute(0, 3, 1, 2).float().div(255)
    x = x.sub_(torch.tensor(mean, dtype=torch.float32)[:, None, None])
    return x.div_(torch.tensor(std, dtype=torch.float32)[:, None, None]).numpy()


@pytest.mark.parametrize("src,size,offset", HAND_CASES_256)
def test_uint8_transform_is_the_cropped_rgb_image(src, size, offset):
    img = noise_image(*src, seed=src[1])
    got = ImageTransform(get_model_spec("focal-fast-s").default_transform).uint8(img)
    assert got.dtype == np.uint8 and got.shape == (1, 224, 224, 3) and got.flags.c_contiguous
    assert np.array_equal(got, reference_uint8(img, size, offset, 224))


@pytest.mark.parametrize("mode", MODES)
def test_uint8_files_of_odd_modes_are_byte_exact_and_normalise_to_the_float32_files(tmp_path, mode):
    img = noise_image(203, 301, seed=13)  # portrait: 256*301/203 = 379.6 → (256, 379); offsets (16, 78)
    odd = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257) if mode == "I;16" else img.convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    path = tmp_path / "img" / f"x.{'tif' if fmt == 'TIFF' else fmt.lower()}"
    path.parent.mkdir()
    odd.save(path, format=fmt)
    u8 = preprocess("focal-fast-s", path.parent, tmp_path / "u8", dtype="uint8", workers=1, progress=False)
    f32 = preprocess("focal-fast-s", path.parent, tmp_path / "f32", workers=1, progress=False)
    assert u8.written == f32.written == 1
    pixels = read_u8(tmp_path / "u8" / "x.bin", 224)
    assert np.array_equal(pixels, reference_uint8(Image.open(path), (256, 379), (16, 78), 224))
    assert np.array_equal(read_bin(tmp_path / "f32" / "x.bin", 224), float32_path_of(pixels))


def test_uint8_for_every_lead_transform_and_preset(tmp_path):
    """384-px Evo, VAN's 0.5 mean/std, the modelzoo preset: uint8 then ToTensor+Normalize = float32 file."""
    root = tmp_path / "img"
    for k, (w, h) in enumerate([(500, 375), (333, 257), (31, 17), (1001, 999)]):
        save_jpeg(root / f"i{k}.JPEG", noise_image(w, h, seed=20 + k))
    cases = [("evo-levit-256-384", "official"), ("van-b2", "official"), ("focal-fast-s", "modelzoo"),
             ("twins-altgvt-s", "official")]
    for model, preset in cases:
        t = get_model_spec(model).transform(preset)
        u8_dir, f32_dir = tmp_path / f"{model}-{preset}-u8", tmp_path / f"{model}-{preset}-f32"
        preprocess(model, root, u8_dir, preset=preset, dtype="uint8", workers=2, progress=False)
        preprocess(model, root, f32_dir, preset=preset, workers=1, progress=False)
        for name in ("i0", "i1", "i2", "i3"):
            pixels = read_u8(u8_dir / f"{name}.bin", t.crop)
            assert np.array_equal(read_bin(f32_dir / f"{name}.bin", t.crop), float32_path_of(pixels, t.mean, t.std))
    # one hand-checked case: Evo at 384 (resize 438) on 500x375 → (584, 438), offsets (100, 27)
    evo = read_u8(tmp_path / "evo-levit-256-384-official-u8" / "i0.bin", 384)
    assert np.array_equal(evo, reference_uint8(Image.open(root / "i0.JPEG"), (584, 438), (100, 27), 384))
    zoo = read_u8(tmp_path / "focal-fast-s-modelzoo-u8" / "i0.bin", 224)
    assert np.array_equal(zoo, reference_uint8(Image.open(root / "i0.JPEG"), (224, 224), (0, 0), 224,
                                               Image.Resampling.BILINEAR))


def test_uint8_manifest_layout_and_raw_bytes(tmp_path):
    root = tmp_path / "img"
    img = noise_image(256, 256, seed=2)
    img.save(root.mkdir() or root / "sq.png")
    preprocess("van-b2", root, tmp_path / "out", dtype="uint8", workers=1, progress=False)
    raw = (tmp_path / "out" / "sq.bin").read_bytes()
    assert len(raw) == 224 * 224 * 3 == 150_528
    # van-b2: resize 248 (224 / 0.9) → 248x248, offset 12: the crop's first pixel's R, G, B come first
    assert tuple(raw[:3]) == tuple(np.asarray(img.resize((248, 248), Image.Resampling.BICUBIC))[12, 12])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dtype"] == "uint8" and manifest["tensor_layout"] == "NHWC"
    assert manifest["shape"] == [1, 224, 224, 3] and manifest["bytes_per_file"] == 150_528
    assert manifest["normalization"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    source = root / "sq.png"
    assert manifest["status"] == "complete" and manifest["files"] == [{
        "source": "sq.png", "bin": "sq.bin", "source_size": source.stat().st_size,
        "source_mtime_ns": source.stat().st_mtime_ns, "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }]
    preprocess("focal-fast-s", root, tmp_path / "f32", workers=1, progress=False)
    plain = json.loads((tmp_path / "f32" / "manifest.json").read_text())
    assert (plain["dtype"], plain["tensor_layout"], plain["normalization"]) == ("float32", "NCHW", None)
    assert plain["shape"] == [1, 3, 224, 224] and plain["bytes_per_file"] == 602_112


def test_a_folder_never_mixes_dtypes_and_uint8_resumes(tmp_path):
    root = tmp_path / "img"
    for k in range(4):
        save_jpeg(root / f"i{k}.JPEG", noise_image(90 + k, 70, seed=k))
    out = tmp_path / "out"
    preprocess("focal-fast-s", root, out, workers=1, progress=False)
    floats = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    refused = run_cli("preprocess", "--images", root, "--out", out, "--dtype", "uint8", "--quiet")
    assert refused.exit_code == 1
    (line,) = [ln for ln in refused.output.splitlines() if ln.startswith("focalinfer: error")]
    assert "focal-fast-s / preset official / float32" in line and "uint8" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == floats
    forced = run_cli("preprocess", "--images", root, "--out", out, "--dtype", "uint8", "--force", "--quiet")
    assert forced.exit_code == 0 and "written 4" in forced.output
    assert all(p.stat().st_size == 150_528 for p in out.glob("*.bin"))
    first = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    (out / "i2.bin").unlink()
    (out / "i1.bin").write_bytes(floats["i1.bin"])  # a float32-sized file is not a finished uint8 one
    res = preprocess("focal-fast-s", root, out, dtype="uint8", workers=2, progress=False)
    assert (res.written, res.reused) == (2, 2)
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == first
    back = run_cli("preprocess", "--images", root, "--out", out, "--quiet")  # float32 again: refused
    assert back.exit_code == 1 and "preset official / uint8" in back.output


def test_uint8_output_independent_of_workers(tmp_path):
    root = tmp_path / "img"
    for k in range(6):
        save_jpeg(root / f"v_{k}.JPEG", noise_image(150 + 17 * k, 110 + 9 * k, seed=k))
    preprocess("focal-fast-s", root, tmp_path / "one", dtype="uint8", workers=1, progress=False)
    preprocess("focal-fast-s", root, tmp_path / "two", dtype="uint8", workers=2, progress=False)
    for p in (tmp_path / "one").glob("*.bin"):
        assert p.read_bytes() == (tmp_path / "two" / p.name).read_bytes()
    assert len(list((tmp_path / "two").glob("*.bin"))) == 6


def test_cli_rejects_an_unknown_dtype(tmp_path):
    result = run_cli("preprocess", "--images", tmp_path, "--out", tmp_path / "out", "--dtype", "float16")
    assert result.exit_code == 2 and "float16" in result.output


# --- issue 22: a full disk, the label-file hint, the make hint ---------------------------------


def ten_photos(root: Path) -> Path:
    for k in range(10):
        save_jpeg(root / f"ILSVRC2012_val_{k:08d}.JPEG", noise_image(60 + k, 50, seed=k))
    return root


def test_too_little_space_is_one_line_before_any_work(tmp_path, small_disk, monkeypatch):
    images = ten_photos(tmp_path / "img")
    monkeypatch.setattr("focalinfer.preprocess.run._run_all", lambda *a: pytest.fail("work started"))
    result = run_cli("preprocess", "--images", images, "--out", small_disk / "bin", "--workers", "1", "--quiet")
    assert result.exit_code == 1
    line = [ln for ln in result.output.splitlines() if ln.startswith("focalinfer: error")]
    assert line == [f"focalinfer: error: {small_disk / 'bin'}: not enough free space: 10 new files (+1 being "
                    f"written) × 602,112 bytes ≈ 6.6 MB needed, 3.1 MB free; free space or choose another --out"]
    assert os.listdir(small_disk / "bin") == []


def test_a_disk_that_fills_up_midway_is_one_line_and_a_clean_state(tmp_path, small_disk, monkeypatch):
    images = ten_photos(tmp_path / "img")
    out = small_disk / "bin"
    monkeypatch.setattr("focalinfer.preprocess.run._check_space", lambda *a: None)  # someone else filled it
    result = run_cli("preprocess", "--images", images, "--out", out, "--workers", "1", "--quiet")
    assert result.exit_code == 1
    line = [ln for ln in result.output.splitlines() if ln.startswith("focalinfer: error")]
    assert line == [f"focalinfer: error: {out}: the disk filled up (No space left on device); this run writes 10 "
                    "files × 602,112 bytes ≈ 6.0 MB: free that much and rerun to resume (finished files are kept), "
                    "or choose another --out"]
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".tmp")]
    kept = sorted(n for n in names if n.endswith(".bin"))
    assert 0 < len(kept) < 10
    assert all((out / n).stat().st_size == 602_112 for n in kept)
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    journal = [json.loads(line)["bin"] for line in (out / ".preprocess-journal.jsonl").read_text().splitlines()]
    assert journal == kept  # every finished file is recorded: a rerun with space reuses them


def test_class_folders_without_labels_out_say_no_label_file_was_written(tmp_path):
    root = class_folder(tmp_path / "img", {"n01": ["a.JPEG"], "n02": ["b.JPEG"]})
    result = run_cli("preprocess", "--images", root, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"note: {root} holds class folders, but no label file was written (eval needs one); rerun with " \
           "--labels-out val_label.txt (the .bin files are reused)" in result.output
    flat = run_cli("preprocess", "--images", root / "n01", "--out", tmp_path / "flat", "--quiet")
    assert "no label file" not in flat.output
