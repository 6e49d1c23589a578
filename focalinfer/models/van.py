"""van-b2 family (model code arrives with the model-zoo issue; eval config is final)."""

from focalinfer.registry import (
    INCEPTION_MEAN, INCEPTION_STD, ModelSpec, modelzoo_transform, official_transform, register_model,
)


def van_b2(**kwargs):
    raise NotImplementedError("van-b2: model code not written yet")


register_model(ModelSpec(
    name="van-b2",
    family="van",
    builder=van_b2,
    input_size=224,
    transforms={
        "official": official_transform(224, 0.9, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        "modelzoo": modelzoo_transform(224),
    },
    checkpoint_layout="model",
    source="",
    is_lead=True,
))
