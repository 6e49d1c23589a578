"""STAND-IN for CANN's `atc` (tests only): checks the argv against the contract, writes a fake .om.

The fake .om is the ONNX with its batch axis fixed to the --input_shape batch, so the stand-in
ais_bench can run it. With --dynamic_batch_size the batch axis stays symbolic and the gears go in
the ONNX metadata (`standin.dynamic_batch_size`). With --insert_op_conf (static AIPP, spec
precision.md) the graph gets a uint8 NHWC input and the AIPP formula in front, its output rounded
to fp16 as the chip's is. Any unknown, missing or malformed flag or cfg entry exits 3 with an
E-code line.
--precision_mode must be one of the documented values; --keep_dtype must name a file of entries,
one per line, each an ONNX node name exactly as in --model (unique there) or OpType::<type>
(docs/precision.md).
"""

import json
import os
import re
import sys

REQUIRED = {"framework", "model", "output", "input_format", "input_shape", "log", "soc_version"}
OPTIONAL = {"op_precision_mode", "precision_mode", "keep_dtype", "insert_op_conf", "enable_small_channel",
            "dynamic_batch_size"}
PRECISION_MODES = {"force_fp32", "force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision"}


def die(message, code=3):
    print(f"E10001: [STANDIN atc] {message}")
    print("ATC run failed, Please check the detail log, Try 'atc --help' for more information")
    sys.exit(code)


def parse(argv):
    flags = {}
    for arg in argv:
        match = re.fullmatch(r"--([a-z_]+)=(.+)", arg)
        if not match:
            die(f"argument {arg!r} is not of the form --name=value")
        name, value = match.groups()
        if name not in REQUIRED | OPTIONAL:
            die(f"unknown flag --{name}")
        if name in flags:
            die(f"flag --{name} given twice")
        flags[name] = value
    missing = REQUIRED - set(flags)
    if missing:
        die(f"missing flags: {sorted(missing)}")
    return flags


def check(flags):
    import onnx

    if flags["framework"] != "5":
        die("--framework must be 5 (ONNX)")
    if flags["input_format"] != "NCHW" or flags["log"] != "error":
        die("--input_format must be NCHW and --log error")
    if not re.fullmatch(r"Ascend\w+", flags["soc_version"]):
        die(f"--soc_version {flags['soc_version']!r} is not an Ascend SoC")
    if not flags["model"].endswith(".onnx") or not os.path.isfile(flags["model"]):
        die(f"--model {flags['model']} is not an existing .onnx")
    model = onnx.load(flags["model"])
    inits = {i.name for i in model.graph.initializer}
    graph_input = [i for i in model.graph.input if i.name not in inits][0]
    name, _, dims = flags["input_shape"].rpartition(":")
    if name != graph_input.name:
        die(f"--input_shape names {name!r} but the ONNX input is {graph_input.name!r}")
    shape = [int(d) for d in dims.split(",")]
    onnx_dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    if len(shape) != 4 or shape[1:] != onnx_dims[1:]:
        die(f"--input_shape {shape} does not match the ONNX's C,H,W {onnx_dims[1:]}")
    gears = check_gears(flags, shape[0])
    aipp = check_aipp(flags, shape) if "insert_op_conf" in flags else None
    if flags.get("enable_small_channel", "1") not in ("0", "1"):
        die("--enable_small_channel must be 0 or 1")
    if "op_precision_mode" in flags:
        lines = open(flags["op_precision_mode"]).read().split()
        if not lines or not all(re.fullmatch(r"\w+=\w+", ln) for ln in lines):
            die("--op_precision_mode file must hold OpType=mode lines")
    if "precision_mode" in flags and flags["precision_mode"] not in PRECISION_MODES:
        die(f"--precision_mode {flags['precision_mode']} is not a precision mode")
    if "keep_dtype" in flags:
        check_keep_dtype(flags["keep_dtype"], model, flags["model"])
    return model, shape[0], gears, aipp


def check_gears(flags, batch):
    """-1 batch ⇔ --dynamic_batch_size of 2–100 distinct gears, each 1–2048."""
    if "dynamic_batch_size" not in flags:
        if batch < 1:
            die(f"--input_shape batch {batch} needs --dynamic_batch_size (or a positive batch)")
        return []
    if batch != -1:
        die("--dynamic_batch_size needs -1 as the --input_shape batch")
    try:
        gears = [int(g) for g in flags["dynamic_batch_size"].split(",")]
    except ValueError:
        die(f"--dynamic_batch_size {flags['dynamic_batch_size']!r} is not a comma list of integers")
    if not 2 <= len(gears) <= 100 or len(set(gears)) != len(gears) or any(not 1 <= g <= 2048 for g in gears):
        die(f"--dynamic_batch_size {gears}: 2-100 distinct gears, each 1-2048")
    return gears


AIPP_KEYS = {"aipp_mode", "related_input_rank", "input_format", "src_image_size_w", "src_image_size_h", "crop",
             "csc_switch", "rbuv_swap_switch"} | {f"{k}_chn_{i}" for k in ("mean", "min", "var_reci") for i in range(3)}


def check_aipp(flags, shape):
    """The static RGB888_U8 aipp_op of docs/infer.md: every key once, values in ATC's ranges."""
    text = open(flags["insert_op_conf"]).read()
    match = re.fullmatch(r"\s*aipp_op\s*\{(.*)\}\s*", text, re.S)
    if not match:
        die("--insert_op_conf must hold one aipp_op { ... } block")
    cfg = {}
    for line in match.group(1).strip().splitlines():
        key, sep, value = (part.strip() for part in line.partition(":"))
        if not sep or key not in AIPP_KEYS or key in cfg:
            die(f"--insert_op_conf: bad, unknown or repeated line {line.strip()!r}")
        cfg[key] = value
    if set(cfg) != AIPP_KEYS:
        die(f"--insert_op_conf: missing {sorted(AIPP_KEYS - set(cfg))}")
    fixed = {"aipp_mode": "static", "related_input_rank": "0", "input_format": "RGB888_U8", "crop": "false",
             "csc_switch": "false", "rbuv_swap_switch": "false",
             "src_image_size_w": str(shape[3]), "src_image_size_h": str(shape[2])}
    for key, want in fixed.items():
        if cfg[key] != want:
            die(f"--insert_op_conf: {key} is {cfg[key]!r}, this stand-in takes {want!r}")
    mean = [int(cfg[f"mean_chn_{i}"]) for i in range(3)]
    low = [float(cfg[f"min_chn_{i}"]) for i in range(3)]
    reci = [float(cfg[f"var_reci_chn_{i}"]) for i in range(3)]
    if any(not 0 <= m <= 255 for m in mean) or any(not 0 <= v <= 255 for v in low) \
            or any(not -65504 <= r <= 65504 for r in reci):
        die("--insert_op_conf: mean_chn 0-255, min_chn 0-255, var_reci_chn within fp16")
    return mean, low, reci


def prepend_aipp(model, aipp):
    """uint8 NHWC input → (pixel - mean_chn - min_chn) * var_reci_chn → fp16 → the original graph."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    mean, low, reci = aipp
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    position, original = next((k, i) for k, i in enumerate(graph.input) if i.name not in inits)
    inner = original.name + "_after_aipp"
    for node in graph.node:
        node.input[:] = [inner if name == original.name else name for name in node.input]
    _, c, h, w = [d.dim_value for d in original.type.tensor_type.shape.dim]
    offset = np.array([m + v for m, v in zip(mean, low)], np.float32).reshape(1, 3, 1, 1)
    scale = np.array(reci, np.float32).reshape(1, 3, 1, 1)
    graph.initializer.extend([numpy_helper.from_array(offset, "aipp_offset"), numpy_helper.from_array(scale, "aipp_scale")])
    nodes = [
        helper.make_node("Cast", [original.name], ["aipp_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["aipp_f"], ["aipp_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["aipp_nchw", "aipp_offset"], ["aipp_sub"]),
        helper.make_node("Mul", ["aipp_sub", "aipp_scale"], ["aipp_mul"]),
        helper.make_node("Cast", ["aipp_mul"], ["aipp_fp16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["aipp_fp16"], [inner], to=TensorProto.FLOAT),
    ]
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)
    new_input = helper.make_tensor_value_info(original.name, TensorProto.UINT8, [1, h, w, c])
    graph.input.remove(original)
    graph.input.insert(position, new_input)


def check_keep_dtype(path, model, model_path):
    """One entry per line: an ONNX node name exactly as in the model, or OpType::<type>."""
    if not os.path.isfile(path):
        die(f"--keep_dtype {path} does not exist")
    names = [node.name for node in model.graph.node]
    lines = open(path).read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        die(f"--keep_dtype {path} is empty")
    for line in lines:
        if re.fullmatch(r"OpType::\w+", line):
            continue
        if not line or line != line.strip():
            die(f"--keep_dtype {path}: entry {line!r} is blank or padded")
        if names.count(line) != 1:
            die(f"--keep_dtype {path}: {line!r} is {'not a node' if line not in names else 'not a unique node'} "
                f"of {os.path.basename(model_path)}")


def write_om(model, batch, path, gears=(), aipp=None):
    import onnx

    if aipp is not None:
        prepend_aipp(model, aipp)
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if gears:
            dim.dim_param = "batch"
        else:
            dim.dim_value = batch
    if gears:
        model.metadata_props.add(key="standin.dynamic_batch_size", value=",".join(map(str, gears)))
    onnx.save(model, path)


def main():
    flags = parse(sys.argv[1:])
    if os.environ.get("STANDIN_CALLS"):
        with open(os.environ["STANDIN_CALLS"], "a") as f:
            f.write(json.dumps({"tool": "atc", "argv": sys.argv[1:], "cwd": os.getcwd()}) + "\n")
    model, batch, gears, aipp = check(flags)
    mode = os.environ.get("STANDIN_ATC_MODE", "ok")
    print("ATC start working now, please wait for a moment.")
    if mode == "fail" or os.environ.get("STANDIN_ATC_FAIL_BS") == str(batch):
        print("E19010: [STANDIN atc] No parser is registered for Op [Gelu_12, optype [ai.onnx::11::Gelu]].")
        die("model conversion failed", code=1)
    if mode == "noom":
        print("ATC run success, welcome to the next use.")
        return
    suffix = "_linux_x86_64" if mode == "arch" else ""
    write_om(model, batch, flags["output"] + suffix + ".om", gears, aipp)
    open("fusion_result.json", "w").write("{}")  # as ATC does, in its working directory
    print("ATC run success, welcome to the next use.")


if __name__ == "__main__":
    main()
