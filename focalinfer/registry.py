"""The model registry: the single source of truth for every fact about a model.

Family modules in ``focalinfer.models`` declare their variants with :func:`register_model`
(timm-style: the builder, checkpoint adapter and eval config live beside the modules).
Every stage asks this module, never a family module, for model facts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from focalinfer.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

# Family modules that register models; importing them fills the registry.
FAMILY_MODULES = ("focal", "twins", "evo_levit", "van")


@dataclass(frozen=True)
class EvalTransform:
    """An eval transform: PIL convert('RGB') → resize → center crop → /255 → normalize → CHW.

    ``resize_mode='shorter'`` is torchvision ``Resize(int)`` (shorter side to ``resize``, the
    longer side ``int(resize * long / short)``); ``'square'`` resizes straight to
    ``(resize, resize)`` (the Ascend ModelZoo ports).
    """

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shorter"

    def as_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalTransform":
        return cls(
            resize=int(d["resize"]),
            crop=int(d["crop"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d["interpolation"],
            resize_mode=d["resize_mode"],
        )


def official_transform(input_size: int, crop_pct: float = 0.875, **kw: Any) -> EvalTransform:
    """The DeiT/timm eval rule: resize the shorter side to ``int(input_size / crop_pct)``."""
    return EvalTransform(resize=int(input_size / crop_pct), crop=input_size, **kw)


def modelzoo_transform(input_size: int, **kw: Any) -> EvalTransform:
    """Ascend ModelZoo ports: PIL bilinear straight to the input size, mean = std = 0.5."""
    return EvalTransform(
        resize=input_size,
        crop=input_size,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        interpolation="bilinear",
        resize_mode="square",
        **kw,
    )


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline knows about one registered model."""

    name: str
    family: str
    builder: Callable[..., Any]
    input_size: int
    transforms: Mapping[str, EvalTransform]
    checkpoint_layout: str  # 'model' | 'state_dict' | 'raw': how the official .pth wraps the weights
    source: str  # official code and commit the implementation follows
    checkpoint_filter: Callable[[dict, Any], dict] | None = None
    num_classes: int = 1000
    params: int | None = None  # parameter count of the official model
    input_name: str = "image"
    output_name: str = "class"
    atc_op_precision: tuple[str, ...] = ()  # lines of an --op_precision_mode ini
    atc_options: tuple[str, ...] = ()  # extra atc flags, e.g. '--precision_mode=...'
    is_lead: bool = False
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def default_transform(self) -> EvalTransform:
        return self.transforms["official"]

    def transform(self, preset: str = "official") -> EvalTransform:
        if preset not in self.transforms:
            raise UsageError(
                f"model {self.name} has no transform preset {preset!r}; "
                f"choose one of: {', '.join(sorted(self.transforms))}"
            )
        return self.transforms[preset]

    def build(self, **kwargs: Any):
        """Build the eval-mode PyTorch model (random init)."""
        model = self.builder(**kwargs)
        return model.eval()


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED = False


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_families() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for mod in FAMILY_MODULES:
            importlib.import_module(f"focalinfer.models.{mod}")


def model_names(lead_only: bool = False) -> list[str]:
    _load_families()
    return sorted(n for n, s in _REGISTRY.items() if s.is_lead or not lead_only)


def all_specs() -> list[ModelSpec]:
    _load_families()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def get_model_spec(name: str) -> ModelSpec:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown model {name!r}; known models: {', '.join(model_names())}"
        ) from None
