"""The om stage: ONNX → one static-batch .om per batch size with CANN's ATC.

The atc argv is built from the ONNX itself (input name, C, H, W) and the registry's ATC options
for the model; each batch size runs as its own subprocess with its log beside the .om, and a
sidecar JSON (ONNX hash + argv + option-file hashes: op precision ini, AIPP cfg, keep-dtype list) lets
an unchanged batch size be skipped. ``aipp=True`` adds a static AIPP config (uint8 NHWC input,
normalised on the chip, see ``atc/aipp.py``); ``dynamic_batch=[1, 4, 8, 16]`` builds one .om with
those batch gears instead; ``precision_report`` takes the mode and keep list from a ``focalinfer
precision`` report made for this very ONNX.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from focalinfer.atc_rules import keep_dtype_applies
from focalinfer.defaults import DEFAULT_SOC, OM_DIR
from focalinfer.atc.aipp import AIPP_ATC_FLAGS, aipp_cfg_path, aipp_config
from focalinfer.errors import FocalinferError, RecordError, ToolMissingError, UsageError
from focalinfer.inputs import Normalization
from focalinfer import runlock
from focalinfer.log import info, warning
from focalinfer.records import AtcRecord, ModelIdentity, PrecisionRecord, atc_record_path, identify_model
from focalinfer.util import ensure_writable_dir, remove_atomic_temps, sha256_file, write_bytes_atomic

__all__ = ["OnnxInput", "OmBuild", "read_onnx_input", "build_atc_argv", "build_om", "parse_batch_sizes",
           "parse_gears"]

SET_ENV_HINT = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
# ATC's --dynamic_batch_size limits (docs/contract.md, ATC).
GEARS_MIN, GEARS_MAX, GEAR_MAX = 2, 100, 2048
# ATC's error codes: E + a letter or digit + four digits (E10001, EZ3002, E19999).
_ERROR_CODE = re.compile(r"\bE[0-9A-Z]\d{4}\b")


@dataclass(frozen=True)
class OnnxInput:
    """The ONNX graph's single real input (graph inputs that are not initializers)."""

    name: str
    batch: int | None  # None when the batch axis is dynamic
    channels: int
    height: int
    width: int


@dataclass
class OmBuild:
    batch_size: int
    argv: list[str]
    prefix: Path  # ATC's --output: it writes <prefix>.om (or <prefix>_<arch>.om)
    log_path: Path
    sidecar_path: Path
    status: str = "planned"  # planned | up-to-date | built | failed
    om_path: Path | None = None
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    gears: list[int] = field(default_factory=list)  # dynamic batch (batch_size is then 0)
    aipp: dict = field(default_factory=dict)  # {mean, std, crop} with --aipp

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def label(self) -> str:
        return f"dyn{','.join(map(str, self.gears))}" if self.gears else f"bs{self.batch_size}"


def _dim(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def read_onnx_input(onnx_path: str | Path) -> OnnxInput:
    """Input name and shape from the ONNX file (weights in external files are not read)."""
    path = Path(onnx_path)
    stat = path.stat() if path.is_file() else None
    if stat is None:
        raise FocalinferError(f"{onnx_path}: ONNX file not found; run `focalinfer export` first")
    return _read_onnx_input(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_onnx_input(path: str, _mtime_ns: int, _size: int) -> OnnxInput:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises its own types
        raise FocalinferError(f"{path}: not a readable ONNX file ({type(e).__name__}); re-export it") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise FocalinferError(
            f"{path}: the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
            "the om stage builds single-input image classifiers"
        )
    dims = [_dim(d) for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise FocalinferError(
            f"{path}: input {inputs[0].name!r} has shape {dims}; ATC's NCHW --input_shape needs a 4-D input "
            "with fixed channels, height and width"
        )
    return OnnxInput(inputs[0].name, dims[0], dims[1], dims[2], dims[3])


def output_prefix(onnx_path: str | Path, batch_size: int, out_dir: str | Path) -> Path:
    """``<stem>_bs<N>``; batch size 0 is the dynamic-batch build, ``<stem>_dyn``."""
    return Path(out_dir) / f"{Path(onnx_path).stem}_{f'bs{batch_size}' if batch_size else 'dyn'}"


def build_atc_argv(onnx_path, batch_size: int, soc: str, out_dir, op_precision_ini=None,
                   precision_mode: str | None = None, extra: Sequence[str] = (), *,
                   aipp_cfg=None, gears: Sequence[int] = (), keep_dtype=None) -> list[str]:
    """The atc command for one batch size, as the seed runs it (an argv list, no shell).

    ``gears``: one dynamic-batch .om (batch dim -1, ``--dynamic_batch_size``; pass batch size 0);
    ``aipp_cfg``: ``--insert_op_conf`` with ModelZoo's ``--enable_small_channel=1``;
    ``keep_dtype``: ``--keep_dtype`` (ONNX node names kept in fp32).
    """
    spec = read_onnx_input(onnx_path)
    batch = -1 if gears else batch_size
    argv = [
        "atc",
        "--framework=5",
        f"--model={onnx_path}",
        f"--output={output_prefix(onnx_path, 0 if gears else batch_size, out_dir)}",
        "--input_format=NCHW",
        f"--input_shape={spec.name}:{batch},{spec.channels},{spec.height},{spec.width}",
        "--log=error",
        f"--soc_version={soc}",
    ]
    if gears:
        argv.append(f"--dynamic_batch_size={','.join(map(str, gears))}")
    if aipp_cfg is not None:
        argv += [f"--insert_op_conf={aipp_cfg}", *AIPP_ATC_FLAGS]
    if op_precision_ini is not None:
        argv.append(f"--op_precision_mode={op_precision_ini}")
    if precision_mode is not None:
        argv.append(f"--precision_mode={precision_mode}")
    if keep_dtype is not None:
        argv.append(f"--keep_dtype={keep_dtype}")
    argv.extend(extra)
    return argv


def parse_batch_sizes(text: str | Iterable[int]) -> list[int]:
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        sizes = [int(str(i).strip()) for i in items if str(i).strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes {text!r}: give positive integers separated by commas, e.g. 1,4,16") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--batch-sizes {text!r}: give positive integers separated by commas, e.g. 1,4,16")
    return list(dict.fromkeys(sizes))


def parse_gears(text: str | Iterable[int]) -> list[int]:
    """--dynamic-batch gears as ATC accepts them: 2–100 distinct batch sizes, each 1–2048."""
    items = text.split(",") if isinstance(text, str) else list(text)
    hint = (f"--dynamic-batch {text!r}: give {GEARS_MIN}–{GEARS_MAX} distinct batch sizes of 1–{GEAR_MAX} "
            "separated by commas, e.g. 1,4,8,16")
    try:
        gears = [int(str(i).strip()) for i in items]
    except ValueError:
        raise UsageError(hint) from None
    if not GEARS_MIN <= len(gears) <= GEARS_MAX or len(set(gears)) != len(gears) \
            or any(not 1 <= g <= GEAR_MAX for g in gears):
        raise UsageError(hint)
    return gears


# --- registry options ----------------------------------------------------------------------


def registry_model_name(onnx_path: Path, model: str | None, identity: ModelIdentity) -> str | None:
    """--model NAME, else the model the ONNX's identity names (export report, else its metadata)."""
    if model is None and identity.export_error:
        raise FocalinferError(identity.export_error)  # a stale report would pick another model's ATC options
    found = identity.name
    if model and found and model != found:
        warning(f"{onnx_path} was exported from {found}; using --model {model} as asked")
    return model or found


def registry_atc_settings(model_name: str | None, explicit: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(op precision ini lines, extra atc options) the registry keeps for this model."""
    if model_name is None:
        return (), ()
    from focalinfer.registry import get_model_spec

    try:
        spec = get_model_spec(model_name)
    except UsageError:
        if explicit:
            raise
        warning(f"{model_name!r} (from the export report) is not a registered model; "
              "no registry ATC options applied")
        return (), ()
    return tuple(spec.atc_op_precision), tuple(spec.atc_options)


def _write_ini(out_dir: Path, model_name: str, lines: Sequence[str]) -> Path:
    return _write_option_file(out_dir / f"{model_name}_op_precision.ini", "\n".join(lines) + "\n")


def _write_option_file(path: Path, text: str) -> Path:
    """Write ``text`` unless the file already holds it (its mtime then stays)."""
    content = text.encode()
    if not path.is_file() or path.read_bytes() != content:
        write_bytes_atomic(path, content)
    return path


def _aipp_settings(model_name: str | None, preset: str, onnx_input: OnnxInput, out_abs: Path) -> tuple[Path, dict]:
    """(the AIPP cfg written for the model's ``preset`` mean/std, the facts the sidecar records)."""
    from focalinfer.registry import get_model_spec

    if model_name is None:
        raise UsageError("--aipp needs the model's mean/std: pass --model NAME (no export report or ONNX metadata names one)")
    transform = get_model_spec(model_name).transform(preset)
    if (transform.crop, transform.crop) != (onnx_input.height, onnx_input.width):
        raise FocalinferError(
            f"--aipp: {model_name}'s {preset} transform crops {transform.crop}x{transform.crop} but the ONNX input is "
            f"{onnx_input.height}x{onnx_input.width}; pass the --model the ONNX was exported from"
        )
    norm = Normalization(transform.mean, transform.std)
    cfg = _write_option_file(aipp_cfg_path(out_abs, model_name), aipp_config(norm, onnx_input.width, onnx_input.height))
    return cfg, {**norm.as_dict(), "crop": transform.crop, "preset": preset, "cfg": cfg.name}


# --- building ------------------------------------------------------------------------------


def build_om(
    onnx_path,
    batch_sizes: str | Iterable[int],
    soc: str = DEFAULT_SOC,
    out_dir=OM_DIR,
    model: str | None = None,
    precision_mode: str | None = None,
    op_precision_ini=None,
    dry_run: bool = False,
    jobs: int = 1,
    force: bool = False,
    progress: bool = True,
    aipp: bool = False,
    preset: str = "official",
    dynamic_batch: str | Iterable[int] | None = None,
    keep_dtype=None,
    precision_report=None,
) -> list[OmBuild]:
    """Run (or with ``dry_run`` print) atc once per batch size; returns one OmBuild each.

    ``dynamic_batch`` (gears) replaces ``batch_sizes`` with one dynamic-batch build; ``aipp``
    writes ``<out-dir>/<model>.aipp.cfg`` from the model's ``preset`` mean/std and builds with it.

    Paths in the commands are absolute, so each atc can run in its own scratch directory (ATC
    drops kernel_meta/ and fusion_result.json in its working directory, which parallel jobs share
    badly) and a printed command works from anywhere.
    """
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise UsageError(f"{onnx_path}: --onnx must be an .onnx file (the export stage's output)")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    gears = parse_gears(dynamic_batch) if dynamic_batch is not None else []
    sizes = [0] if gears else parse_batch_sizes(batch_sizes)
    onnx_input = read_onnx_input(onnx_path)
    onnx_abs = onnx_path.resolve()
    out_abs = Path(out_dir).resolve()
    ensure_writable_dir(out_abs, "--out-dir")
    with runlock.hold(out_abs, "om", log=lambda note: info(f"om: {note}")):
        for note in _remove_stale_work(out_abs):
            info(f"om: {note}")
        return _build_all(onnx_path, onnx_input, onnx_abs, out_abs, sizes, gears, soc, model, precision_mode,
                          op_precision_ini, dry_run, jobs, force, progress, aipp, preset, keep_dtype,
                          precision_report)


def _remove_stale_work(out_abs: Path) -> list[str]:
    """What a killed om left (we hold the folder's lock: no live om writes there): temp files of its
    records and option files, and atc's scratch folders."""
    removed = remove_atomic_temps(out_abs, lambda target: target.endswith((".atc.json", ".ini", ".cfg")))
    scratch = sorted(p for p in out_abs.glob(".atc-work-*") if p.is_dir())
    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)
    left = removed + [p.name for p in scratch]
    return [f"{out_abs}: removed what a killed om left ({', '.join(left)})"] if left else []


def _build_all(onnx_path, onnx_input, onnx_abs, out_abs, sizes, gears, soc, model, precision_mode,
               op_precision_ini, dry_run, jobs, force, progress, aipp, preset, keep_dtype,
               precision_report) -> list[OmBuild]:
    identity = identify_model(onnx_path)
    onnx_sha256 = identity.sha256
    precision_mode, keep = _resolve_precision(onnx_path, onnx_sha256, out_abs, precision_mode, keep_dtype,
                                              precision_report)
    name = registry_model_name(onnx_path, model, identity)
    ini, extra = _resolve_options(name, out_abs, model, precision_mode, op_precision_ini)
    if keep is not None:  # an explicit list replaces the registry's
        extra = tuple(o for o in extra if not o.startswith("--keep_dtype"))
    cfg, aipp_facts = None, {}
    if aipp:
        cfg, aipp_facts = _aipp_settings(name, preset, onnx_input, out_abs)
    builds = [_plan(onnx_abs, bs, soc, out_abs, ini, precision_mode, extra, cfg, gears, aipp_facts, keep)
              for bs in sizes]
    inputs = {"op_precision": sha256_file(ini)} if ini else {}
    if cfg is not None:
        inputs["aipp_cfg"] = sha256_file(cfg)
    if keep is not None:  # a changed list (same path, new content) rebuilds
        inputs["keep_dtype"] = sha256_file(keep)
    fingerprint = {"onnx_sha256": onnx_sha256, "inputs": inputs}
    for build in builds:
        if not force and _up_to_date(build, fingerprint):
            build.status = "up-to-date"
        elif onnx_input.batch is not None and (gears or onnx_input.batch != build.batch_size):
            warning(f"{onnx_path} has a static batch of {onnx_input.batch}; ATC may fail at "
                  f"{build.label} (export with --dynamic-batch)")
    if dry_run:
        for build in builds:
            print(f"# {build.label}: up to date ({build.om_path})" if build.status == "up-to-date"
                  else build.command)
        return builds
    todo = [b for b in builds if b.status != "up-to-date"]
    for build in builds:
        if build.status == "up-to-date" and progress:
            info(f"om {build.label}: up to date ({build.om_path})")
    if todo and shutil.which("atc") is None:
        raise ToolMissingError(
            f"atc not found on PATH: source CANN's set_env.sh (e.g. . {SET_ENV_HINT}) or pass --dry-run to print the commands"
        )
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda b: _run_atc(b, onnx_path, soc, fingerprint, progress), todo))
    failed = [b for b in todo if b.status == "failed"]
    if failed:
        for build in failed:
            warning(f"om {build.label}: ATC failed; log: {build.log_path}")
            for line in build.errors:
                warning(f"    {line}")
        what = f"dynamic batch {','.join(map(str, gears))}" if gears else \
            f"batch size {', '.join(str(b.batch_size) for b in failed)}"
        raise FocalinferError(
            f"ATC failed for {what} of {onnx_path}; "
            f"the E-code lines and log paths are above"
        )
    return builds


def _resolve_options(name, out_abs, model, precision_mode, op_precision_ini):
    ini_lines, registry_options = registry_atc_settings(name, explicit=model is not None)
    if op_precision_ini is not None:
        ini = Path(op_precision_ini)
        if not ini.is_file():
            raise FocalinferError(f"{ini}: op precision ini not found; give an existing file of OpType=mode lines")
        ini = ini.resolve()
    elif ini_lines:
        ini = _write_ini(out_abs, name, ini_lines)
    else:
        ini = None
    # An explicit --precision-mode replaces the registry's.
    extra = tuple(o for o in registry_options if not (precision_mode and o.startswith("--precision_mode")))
    return ini, extra


def _resolve_precision(onnx_path: Path, onnx_sha256: str, out_abs: Path, precision_mode, keep_dtype,
                       precision_report) -> tuple[str | None, Path | None]:
    """(--precision_mode, --keep_dtype file): from the flags, or from a precision report for this ONNX."""
    if precision_report is None:
        if keep_dtype is None:
            return precision_mode, None
        keep = Path(keep_dtype)
        if not keep.is_file():
            raise FocalinferError(f"{keep}: keep-dtype file not found; give a file of ONNX node names, one per line")
        if not keep_dtype_applies(precision_mode):
            warning(f"ATC ignores --keep_dtype under --precision_mode={precision_mode}, which keeps every "
                    "node's original dtype anyway")
        return precision_mode, keep.resolve()
    if keep_dtype is not None or precision_mode is not None:
        raise UsageError("--precision takes the mode and the keep list from the report; "
                         "drop --precision-mode / --keep-dtype, or drop --precision")
    record = PrecisionRecord.read(precision_report)
    record.check_onnx(onnx_path, onnx_sha256, report=precision_report)
    if not record.keep_dtype:
        return record.precision_mode, None
    path = out_abs / f"{onnx_path.stem}_keep_dtype.cfg"
    content = "".join(f"{name}\n" for name in record.keep_dtype).encode()
    if not path.is_file() or path.read_bytes() != content:
        write_bytes_atomic(path, content)
    return record.precision_mode, path


def _plan(onnx_abs, bs, soc, out_abs, ini, precision_mode, extra, cfg=None, gears=(), aipp=None,
          keep=None) -> OmBuild:
    prefix = output_prefix(onnx_abs, bs, out_abs)
    return OmBuild(
        batch_size=bs,
        argv=build_atc_argv(onnx_abs, bs, soc, out_abs, ini, precision_mode, extra, aipp_cfg=cfg, gears=gears,
                            keep_dtype=keep),
        prefix=prefix,
        log_path=prefix.with_name(prefix.name + ".atc.log"),
        sidecar_path=atc_record_path(prefix),
        gears=list(gears),
        aipp=dict(aipp or {}),
    )


def _up_to_date(build: OmBuild, fingerprint: dict) -> bool:
    try:
        record = AtcRecord.read(build.sidecar_path)
    except RecordError:
        return False  # a broken sidecar only means "rebuild"
    if record is None:
        return False
    om = build.prefix.parent / record.om
    same = (record.argv == build.argv and record.onnx_sha256 == fingerprint["onnx_sha256"]
            and record.inputs == fingerprint["inputs"])
    if same and record.om and om.is_file():
        build.om_path = om
        return True
    return False


def find_om(prefix: Path, since: float) -> Path | None:
    """The .om ATC wrote for ``prefix``: <prefix>.om or <prefix>_<arch>.om, newest, not older than ``since``."""
    pattern = re.compile(rf"^{re.escape(prefix.name)}(_[A-Za-z]\w*)?\.om$")
    candidates = [p for p in prefix.parent.glob(f"{prefix.name}*.om")
                  if pattern.match(p.name) and p.stat().st_mtime >= since]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def error_lines(log_text: str, limit: int = 10) -> list[str]:
    """ATC's E-code lines (and its 'ATC run failed' line), else the log's last lines."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    picked = [ln for ln in lines if _ERROR_CODE.search(ln) or "ATC run failed" in ln]
    return list(dict.fromkeys(picked))[:limit] or lines[-5:]


def _run_atc(build: OmBuild, onnx_path: Path, soc: str, fingerprint: dict, progress: bool) -> None:
    # No record while atc runs: a killed rebuild must not leave one vouching for a half-written .om.
    build.sidecar_path.unlink(missing_ok=True)
    workdir = build.prefix.parent / f".atc-work-{build.label}"
    workdir.mkdir(exist_ok=True)
    if progress:
        info(f"om {build.label}: running atc (log: {build.log_path})")
    start = time.time()
    with open(build.log_path, "wb") as log:
        log.write(f"$ {build.command}\n".encode())
        log.flush()
        code = subprocess.run(build.argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir).returncode
    build.seconds = time.time() - start
    build.om_path = find_om(build.prefix, since=start - 1) if code == 0 else None
    if build.om_path is None:
        build.status = "failed"
        text = build.log_path.read_text(errors="replace")
        why = [] if code != 0 else [f"atc exited 0 but wrote no {build.prefix.name}*.om"]
        build.errors = why + error_lines(text)
        return
    shutil.rmtree(workdir, ignore_errors=True)
    AtcRecord(onnx=str(onnx_path), om=build.om_path.name, onnx_sha256=fingerprint["onnx_sha256"],
              batch_size=build.batch_size, soc=soc, argv=build.argv, built=time.strftime("%Y-%m-%dT%H:%M:%S"),
              seconds=round(build.seconds, 1), inputs=fingerprint["inputs"], aipp=build.aipp,
              dynamic_batch=build.gears).write(build.sidecar_path)
    build.status = "built"
    if progress:
        info(f"om {build.label}: built {build.om_path} in {build.seconds:.1f} s")
