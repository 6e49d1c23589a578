from tinynet import tiny_model, tiny_onnx  # noqa: F401  (shared fixtures)
