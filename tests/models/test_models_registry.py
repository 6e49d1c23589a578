"""Every registered model (timm's tests/test_models.py idea): builds, writes its synthetic checkpoint in
the official layout, loads it back strictly, and gives (N, num_classes) finite logits at its input size."""

from __future__ import annotations

import pytest
import torch

from focalinfer import registry
from focalinfer.models.checkpoint import load_model
from focalinfer.models.synthetic import make_checkpoint

# The smallest variant of each family runs in the fast tier; the rest build full-size models.
FAST = {"focal-fast-t", "twins-pcpvt-s", "evo-levit-128s", "van-b0"}


def _params():
    for name in registry.model_names():
        marks = [] if name in FAST else [pytest.mark.fullsize]
        yield pytest.param(name, marks=marks, id=name)


def test_the_fast_tier_covers_every_family():
    families = {registry.get_model_spec(n).family for n in registry.model_names()}
    assert {registry.get_model_spec(n).family for n in FAST} == families


@pytest.mark.parametrize("name", _params())
def test_every_registered_model_loads_its_checkpoint_strictly_and_classifies(name, tmp_path):
    spec = registry.get_model_spec(name)
    path = make_checkpoint(name, tmp_path / f"{name}.pth")
    model = load_model(name, path)  # strict: a missing, unexpected or mis-shaped key raises
    x = torch.randn(2, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = model(x)
    assert tuple(logits.shape) == (2, spec.num_classes)
    assert torch.isfinite(logits).all()
    # Two different images must not collapse onto one output (a model that ignores its input).
    assert not torch.allclose(logits[0], logits[1])
    assert spec.default_transform.crop == spec.input_size
    assert spec.checkpoint_layout in ("model", "state_dict", "raw")
