"""``om --aipp``: the static AIPP config that makes the .om take uint8 NHWC RGB and normalise it
on the chip (docs/infer.md, "--aipp"), from the model's registry mean/std.

The files it expects are ``preprocess --dtype uint8``'s: already resized and cropped to the model's
input, so the config crops nothing, converts no colour space and swaps no channels; it only
computes ``(pixel - mean_chn - min_chn) * var_reci_chn`` with ``mean_chn = 0``,
``min_chn = 255 * mean`` and ``var_reci_chn = 1 / (255 * std)``. The values are
:class:`focalinfer.inputs.Normalization`'s, the same numbers the CPU path normalises with.
"""

from __future__ import annotations

from pathlib import Path

from focalinfer.inputs import Normalization

# ModelZoo's ResNet50 passes it with AIPP (docs/infer.md): C = 3 input channels on the chip.
AIPP_ATC_FLAGS = ("--enable_small_channel=1",)


def aipp_cfg_path(out_dir: str | Path, model_name: str) -> Path:
    return Path(out_dir) / f"{model_name}.aipp.cfg"


def aipp_config(norm: Normalization, width: int, height: int) -> str:
    """The aipp_op block, with the float64 values' shortest round-trip text (``repr``)."""
    lines = [
        "aipp_op {",
        "    aipp_mode: static",
        "    related_input_rank: 0",
        "    input_format: RGB888_U8",
        f"    src_image_size_w: {width}",
        f"    src_image_size_h: {height}",
        "    crop: false",
        "    csc_switch: false",
        "    rbuv_swap_switch: false",
    ]
    lines += [f"    mean_chn_{i}: 0" for i in range(3)]
    lines += [f"    min_chn_{i}: {value!r}" for i, value in enumerate(norm.aipp_min)]
    lines += [f"    var_reci_chn_{i}: {value!r}" for i, value in enumerate(norm.aipp_var_reci)]
    return "\n".join(lines + ["}"]) + "\n"
