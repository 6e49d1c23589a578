"""STAND-IN for `python3 -m ais_bench` (tests only).

Accepts exactly the flags docs/contract.md documents (anything else exits 2) and writes the
outputs the spec describes: natural-sorted inputs, files per batch from tensor/file size, padded
last batch without padding outputs, <stem>_<i>.<fmt> per sample, <dirname>_summary.json, the two
[INFO] lines, device<N> folders for a device list. Files are read as the model input's dtype
(uint8 for an AIPP .om). --dymBatch picks a dynamic-batch .om's gear; a static .om refuses it, a
dynamic one needs it.
"""

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np

from ais_bench.infer.interface import NOT_DYNAMIC, InferSession


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
    args = p.parse_args(argv)
    if args.output_dirname is not None and args.output is None:
        p.error("--output_dirname needs --output")
    if not args.model.endswith(".om"):
        p.error("--model must be an .om")
    return args


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
    for _ in range(args.warmup_count):
        session.infer([data if batches[0] is None else load(batches[0], per, shape, desc.dtype)], mode=mode)
    session.reset_sumaryinfo()
    session.loop = args.loop
    for index, chunk in enumerate(batches):
        feed = data if chunk is None else load(chunk, per, shape, desc.dtype)
        outputs = session.infer([feed], mode=mode)
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
    times = session.sumary().exec_time_list
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
    share = None if files is None else math.ceil(len(files) / len(devices))
    total = 0.0
    for k, device in enumerate(devices):
        prefix = os.path.join(args.output, dirname, f"device{device}")
        os.makedirs(prefix, exist_ok=True)
        total += run(args, device, None if files is None else files[k * share:(k + 1) * share], prefix)
    info(f"summary throughput:{total}")


if __name__ == "__main__":
    main(sys.argv[1:])
