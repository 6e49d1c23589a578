"""twins-altgvt-s family (model code arrives with the model-zoo issue; eval config is final)."""

from focalinfer.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)


def alt_gvt_small(**kwargs):
    raise NotImplementedError("twins-altgvt-s: model code not written yet")


register_model(ModelSpec(
    name="twins-altgvt-s",
    family="twins",
    builder=alt_gvt_small,
    input_size=224,
    transforms={
        "official": official_transform(224, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        "modelzoo": modelzoo_transform(224),
    },
    checkpoint_layout="model",
    source="",
    is_lead=True,
))
