"""STAND-IN for `python3 -m ais_bench` (tests only).

Accepts exactly the flags docs/contract.md documents (anything else exits 2) and writes the
outputs the spec describes: natural-sorted inputs, files per batch from tensor/file size, padded
last batch without padding outputs, <stem>_<i>.<fmt> per sample, <dirname>_summary.json, the two
[INFO] lines; pure inference writes pure_infer_data_<i>.<fmt> (the last run's outputs, whole).
Files are read as the model input's dtype (uint8 for an AIPP .om). --dymBatch picks a
dynamic-batch .om's gear; a static .om refuses it, a dynamic one needs it.

STANDIN_AIS_BENCH_GENERATION picks the generation (spec, "Generations"). With a device list:
2023 splits the inputs into contiguous chunks of ceil(n/devices) into <dirname>/device<D>/ with
<dirname>/device<D>_summary.json; 2024 runs every input on every device unless --divide_input
true (then list_share: 7 over 3 → 3, 2, 2), into <dirname>/device<D>_<i>/ and
device<D>_<i>_summary.json. Both log one `i:… device_… throughput:…` line per device, then
`summary throughput:<sum>`. 2024 also refuses (exit 2, one [ERROR] line) a path with a character
outside [_A-Za-z0-9/.-], a symbolic link, a group/other-writable --model or --input, and an
absolute --output_dirname.
"""

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np

from ais_bench.infer.interface import GENERATION, NOT_DYNAMIC, InferSession, durations_ms, illegal_path, reset_times


class StrictParser(argparse.ArgumentParser):
    def error(self, message):
        print(f"[ERROR] [STANDIN ais_bench] bad arguments: {message}")
        sys.exit(2)


def parse_args(argv):
    p = StrictParser(prog="ais_bench", allow_abbrev=False)
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i")
    p.add_argument("--output", "-o")
    p.add_argument("--output_dirname")
    p.add_argument("--outfmt", default="BIN", choices=["BIN", "NPY", "TXT"])
    p.add_argument("--loop", "-l", type=int, default=1)
    p.add_argument("--device", "-d", default="0")
    p.add_argument("--batchsize", type=int)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--warmup_count", type=int, default=1)
    p.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    p.add_argument("--output_batchsize_axis", type=int, default=0)
    p.add_argument("--display_all_summary", default="False")
    p.add_argument("--debug", default="False")
    p.add_argument("--acl_json_path")
    if GENERATION == "2024":
        p.add_argument("--divide_input", type=str2bool, default=False)
    args = p.parse_args(argv)
    if args.output_dirname is not None and args.output is None:
        p.error("--output_dirname needs --output")
    if not args.model.endswith(".om"):
        p.error("--model must be an .om")
    check_paths(p, args)
    return args


def str2bool(text):
    if text.lower() in ("true", "1", "yes", "t", "y"):
        return True
    if text.lower() in ("false", "0", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"{text} is not a boolean")


def check_paths(p, args):
    for flag, path, read in (("--model", args.model, True), ("--input", args.input, True),
                             ("--output", args.output, False), ("--output_dirname", args.output_dirname, False)):
        problem = None if path is None else illegal_path(path, read)
        if problem:
            p.error(f"argument {flag}: path {path} {problem}. Please check.")
    if GENERATION == "2024" and args.output_dirname is not None and os.path.isabs(args.output_dirname):
        p.error(f"argument --output_dirname: {args.output_dirname} must not be an absolute path")


def info(message):
    print(f"[INFO] {message}", flush=True)


def natural(paths):
    key = lambda s: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]
    return sorted(paths, key=key)


def save(path, sample, fmt):
    if fmt == "NPY":
        np.save(path, sample)
    elif fmt == "TXT":
        rows = sample.reshape(-1, sample.shape[-1])
        with open(path, "wb") as f:
            for row in rows:
                np.savetxt(f, np.c_[row], fmt="%f", newline=" ")
                f.write(b"\n")
    else:
        sample.tofile(path)


def stats(values):
    if not values:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    a = np.array(values)
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
            "percentile(99%)": float(np.percentile(a, 99)), "count": len(values)}


def run(args, device, files, output_prefix):
    session = InferSession(device, args.model, loop=1)
    (desc,) = session.get_inputs()
    if desc.shape[0] > 0 and args.dymBatch:
        raise SystemExit(f"[ERROR] {NOT_DYNAMIC}")
    if desc.shape[0] <= 0 and not args.dymBatch:
        raise SystemExit("[ERROR] [STANDIN ais_bench] dynamic model needs --dymBatch")
    mode = "dymbatch" if args.dymBatch else "static"
    batch = desc.shape[0] if desc.shape[0] > 0 else args.dymBatch
    if args.dymBatch:
        try:
            session.set_dynamic_batchsize(batch)
        except RuntimeError as e:
            raise SystemExit(f"[ERROR] {e}")
    shape = [batch] + desc.shape[1:]
    tensor_bytes = int(np.prod(shape)) * desc.dtype.itemsize
    batchsize = args.batchsize or batch
    info(f"try get model batchsize:{batchsize}")
    filesinfo = {}
    if files is None:
        batches = [None]
    else:
        size = os.path.getsize(files[0])
        if tensor_bytes % size:
            print(f"[ERROR] arg0 tensorsize: {tensor_bytes} filesize: {size} not match")
            raise SystemExit(1)
        per = tensor_bytes // size
        batches = [files[i:i + per] for i in range(0, len(files), per)]
    data = np.zeros(shape, desc.dtype)
    if args.pure_data_type == "random":
        data = np.random.default_rng().standard_normal(shape).astype(desc.dtype)
    for _ in range(args.warmup_count):
        session.infer([data if batches[0] is None else load(batches[0], per, shape, desc.dtype)], mode=mode)
    reset_times(session)
    session.loop = args.loop
    for index, chunk in enumerate(batches):
        feed = data if chunk is None else load(chunk, per, shape, desc.dtype)
        outputs = session.infer([feed], mode=mode)
        if chunk is None and output_prefix is not None:
            for out_i, out in enumerate(outputs):  # pure inference: each output of the run, whole
                save(os.path.join(output_prefix, f"pure_infer_data_{out_i}.{args.outfmt.lower()}"), out, args.outfmt)
        if chunk is None or output_prefix is None:
            continue
        for out_i, out in enumerate(outputs):
            pieces = np.array_split(out, per, axis=0)
            for j, path in enumerate(chunk):
                name = f"{os.path.basename(path).split('.')[0]}_{out_i}.{args.outfmt.lower()}"
                out_path = os.path.join(output_prefix, name)
                entry = filesinfo.setdefault(index * per + j, {"infiles": [path], "outfiles": []})
                entry["outfiles"].append(out_path)
                save(out_path, pieces[j], args.outfmt)
    times = durations_ms(session)
    mean = float(np.mean(times)) if times else 0.0
    throughput = 1000 * batchsize / mean if mean else 0
    summary = {"filesinfo": filesinfo, "NPU_compute_time": stats(times), "H2D_latency": stats([]),
               "D2H_latency": stats([]), "throughput": throughput, "npu_compute_time_list": times,
               "pid": os.getpid(), "args": sys.argv}
    t = summary["NPU_compute_time"]
    info("-----------------Performance Summary------------------")
    info(f"NPU_compute_time (ms): min = {t['min']}, max = {t['max']}, mean = {t['mean']}, median = {t['median']}, "
         f"percentile(99%) = {t['percentile(99%)']}")
    info(f"throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean({t['mean']}): {throughput}")
    info("------------------------------------------------------")
    if output_prefix is not None:
        with open(output_prefix + "_summary.json", "w") as f:
            json.dump(summary, f)
    session.finalize()
    return throughput


def load(chunk, per, shape, dtype):
    parts = [np.fromfile(p, dtype=dtype) for p in chunk]
    parts += [parts[0]] * (per - len(chunk))  # pad with the batch's first file
    return np.concatenate(parts).reshape(shape)


def main(argv):
    args = parse_args(argv)
    if os.environ.get("STANDIN_CALLS"):
        with open(os.environ["STANDIN_CALLS"], "a") as f:
            f.write(json.dumps({"tool": "ais_bench", "argv": argv}) + "\n")
    files = None
    if args.input is not None:
        if not os.path.isdir(args.input):
            raise SystemExit(f"[ERROR] [STANDIN ais_bench] {args.input} is not a directory")
        files = natural([os.path.join(args.input, f) for f in os.listdir(args.input)
                         if f.endswith((".bin", ".BIN", ".npy", ".NPY"))])
    devices = [int(d) for d in args.device.split(",")]
    dirname = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
    if len(devices) == 1:
        prefix = None if args.output is None else os.path.join(args.output, dirname)
        if prefix:
            os.makedirs(prefix, exist_ok=True)
        run(args, devices[0], files, prefix)
        return
    total = 0.0
    for k, (device, share) in enumerate(zip(devices, shares(files, len(devices), args))):
        name = f"device{device}" if GENERATION == "2023" else f"device{device}_{k}"
        prefix = os.path.join(args.output, dirname, name)
        os.makedirs(prefix, exist_ok=True)
        start = time.time()
        throughput = run(args, device, share, prefix)
        info(f"i:{k} device_{device} throughput:{throughput} start_time:{start} end_time:{time.time()}")
        total += throughput
    info(f"summary throughput:{total}")


def shares(files, count, args):
    """Each device's files: 2023 always splits (ceil chunks); 2024 only with --divide_input true."""
    if files is None:
        return [None] * count
    if GENERATION == "2023":
        size = math.ceil(len(files) / count)
        return [files[k * size:(k + 1) * size] for k in range(count)]
    if not args.divide_input:
        return [files] * count
    base, extra = divmod(len(files), count)  # list_share: the first `extra` devices take one more
    bounds = [k * base + min(k, extra) for k in range(count + 1)]
    return [files[bounds[k]:bounds[k + 1]] for k in range(count)]


if __name__ == "__main__":
    main(sys.argv[1:])
