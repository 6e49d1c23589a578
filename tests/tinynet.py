"""A tiny registered classifier for bench and backend tests: every op family the CPU fusions, the
MAC counter and the runtimes care about, at a size that exports in a second.

Fixtures (tests/conftest.py imports them): ``tiny_model`` registers it as ``bench-tiny``;
``tiny_onnx`` is its plain export (dynamic batch, opset 11) with its PyTorch twin.
``write_databin`` writes input files as preprocess does, for the infer tests.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from focalinfer import registry
from focalinfer.records import Manifest

TINY = "bench-tiny"


class TinyNet(nn.Module):
    """Conv + BN stem, a pre-norm GELU MLP over tokens, a linear head: every op family the
    CPU fusions and the MAC counter care about, at a size that exports in a second."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = x + self.mlp(self.norm(x))
        return self.head(x.mean(1))


# Conv 3→8, 3×3, 16×16 output; fc1 8→16 and fc2 16→8 over 256 tokens; head 8→10.
TINY_MACS = 8 * 16 * 16 * 3 * 9 + 256 * 8 * 16 + 256 * 16 * 8 + 8 * 10


@pytest.fixture
def tiny_model(monkeypatch):
    registry.model_names()  # load the real families first, so the fixture only adds one entry
    spec = registry.ModelSpec(
        name=TINY, family="test", builder=TinyNet, input_size=32,
        transforms={"official": registry.official_transform(32)}, checkpoint_layout="model",
        source="tests/tinynet.py", num_classes=10,
    )
    monkeypatch.setitem(registry._REGISTRY, TINY, spec)
    return spec


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The tiny model exported plainly (dynamic batch, opset 11), with its PyTorch twin."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=11,
                      input_names=["image"], output_names=["class"],
                      dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
    return path, model



def write_databin(folder, images, names, model: str = "tiny"):
    """One float32 NCHW .bin per image (each of batch 1) and the manifest preprocess writes beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images):
        image.tofile(folder / f"{name}.bin")
    shape = list(images[0].shape)
    Manifest(model=model, preset="official", transform={}, shape=shape,
             files=[{"source": f"{n}.JPEG", "bin": f"{n}.bin"} for n in names]).write(folder)
    return folder
