"""evo-levit-256-384 family (model code arrives with the model-zoo issue; eval config is final)."""

from focalinfer.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)


def evo_levit_256_384(**kwargs):
    raise NotImplementedError("evo-levit-256-384: model code not written yet")


register_model(ModelSpec(
    name="evo-levit-256-384",
    family="evo_levit",
    builder=evo_levit_256_384,
    input_size=384,
    transforms={
        "official": official_transform(384, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        "modelzoo": modelzoo_transform(384),
    },
    checkpoint_layout="model",
    source="",
    is_lead=True,
))
