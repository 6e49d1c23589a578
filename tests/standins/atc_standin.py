"""STAND-IN for CANN's `atc` (tests only): checks the argv against the contract, writes a fake .om.

The fake .om is the ONNX with its batch axis fixed to the --input_shape batch, so the stand-in
ais_bench can run it. Any unknown, missing or malformed flag exits 3 with an E-code line.
--precision_mode must be one of the documented values; --keep_dtype must name a file of entries,
one per line, each an ONNX node name exactly as in --model (unique there) or OpType::<type>
(spec/precision.md).
"""

import json
import os
import re
import sys

REQUIRED = {"framework", "model", "output", "input_format", "input_shape", "log", "soc_version"}
OPTIONAL = {"op_precision_mode", "precision_mode", "keep_dtype"}
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
    if "op_precision_mode" in flags:
        lines = open(flags["op_precision_mode"]).read().split()
        if not lines or not all(re.fullmatch(r"\w+=\w+", ln) for ln in lines):
            die("--op_precision_mode file must hold OpType=mode lines")
    if "precision_mode" in flags and flags["precision_mode"] not in PRECISION_MODES:
        die(f"--precision_mode {flags['precision_mode']} is not a precision mode")
    if "keep_dtype" in flags:
        check_keep_dtype(flags["keep_dtype"], model, flags["model"])
    return model, shape[0]


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


def write_om(model, batch, path):
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    import onnx

    onnx.save(model, path)


def main():
    flags = parse(sys.argv[1:])
    if os.environ.get("STANDIN_CALLS"):
        with open(os.environ["STANDIN_CALLS"], "a") as f:
            f.write(json.dumps({"tool": "atc", "argv": sys.argv[1:], "cwd": os.getcwd()}) + "\n")
    model, batch = check(flags)
    mode = os.environ.get("STANDIN_ATC_MODE", "ok")
    print("ATC start working now, please wait for a moment.")
    if mode == "fail" or os.environ.get("STANDIN_ATC_FAIL_BS") == str(batch):
        print("E19010: [STANDIN atc] No parser is registered for Op [Gelu_12, optype [ai.onnx::11::Gelu]].")
        die("model conversion failed", code=1)
    if mode == "noom":
        print("ATC run success, welcome to the next use.")
        return
    suffix = "_linux_x86_64" if mode == "arch" else ""
    write_om(model, batch, flags["output"] + suffix + ".om")
    open("fusion_result.json", "w").write("{}")  # as ATC does, in its working directory
    print("ATC run success, welcome to the next use.")


if __name__ == "__main__":
    main()
