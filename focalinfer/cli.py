"""The focalinfer command line: one click group, one subcommand per stage.

Commands only parse flags and call library functions; a FocalinferError becomes one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys

import click

from focalinfer import __version__
from focalinfer.backend.table import BACKENDS, PRECISIONS
from focalinfer.defaults import (
    COMPARE_MIN_COSINE, DATABIN_DIR, DEFAULT_MODEL, DEFAULT_SOC, OM_DIR, PRECISION_MAX_RUNS, PRECISION_MIN_COSINE,
    PRECISION_MIN_TOP1, PRECISION_SAMPLES, RESULT_JSON, WORK_DIR,
)
from focalinfer.errors import FocalinferError
from focalinfer.layout import SUMMARY_SUFFIX
from focalinfer.report import FORMATS as REPORT_FORMATS


# What each command leaves behind when interrupted, so the Ctrl-C line tells the truth.
INTERRUPTED_KEEPS = {
    "preprocess": "the finished .bin files are kept (no label file yet); rerun the same command to resume",
    "export": "nothing was written: the ONNX and its report are written only when export completes "
              "(an existing --out is left as it was)",
    "om": "the .om files already built are kept; rerun to build the rest",
    "infer": "the finished outputs are kept; rerun the same command to resume",
    "eval": "no result.json was written; the finished inference outputs (if any) are kept: rerun the same command "
            "to resume",
    "sample-data": "the images written so far are kept, no val_label.txt yet; rerun to write the whole set",
    "bench all": "the figures of finished models are kept in the work dir; rerun with --resume to reuse them",
}
NOTHING_KEPT = "nothing was written"
# Output formats as ais_bench spells them; any case is accepted (click would show them lower-cased).
OUTFMT = click.Choice(["TXT", "NPY", "BIN"], case_sensitive=False)
OUTFMT_METAVAR = "[TXT|NPY|BIN]"


def _interrupted_line(kept: str | None = None) -> str:
    """``kept``: what the interrupted run says it kept (focalinfer.errors.Interrupted), else the command's rule."""
    ctx = click.get_current_context(silent=True)
    command = " ".join(ctx.command_path.split()[1:]) if ctx else ""
    return f"focalinfer: interrupted; {kept or INTERRUPTED_KEEPS.get(command, NOTHING_KEPT)}"


def user_errors(fn):
    """Turn FocalinferError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FocalinferError as e:
            click.echo(f"focalinfer: error: {e}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:  # a disk or permission failure no check foresaw: still one line, no traceback
            where = e.filename or "a file"
            click.echo(f"focalinfer: error: {where}: {e.strerror or e}; check the path, its permissions and free disk",
                       err=True)
            sys.exit(1)
        except KeyboardInterrupt as e:
            click.echo(_interrupted_line(getattr(e, "kept", None)), err=True)
            sys.exit(130)

    return wrapper


def _set_verbosity(ctx, param, value):
    from focalinfer import log

    state = ctx.ensure_object(dict)
    state[param.name] = value
    log.setup(verbose=state.get("verbose") or 0, progress=not state.get("quiet"))
    return value


def verbosity_options(fn):
    """--quiet and -v for every command, in one place: they set up logging (focalinfer.log)."""
    fn = click.option("-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
                      help="Say more (debug lines).")(fn)
    return click.option("--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                        help="No progress bar.")(fn)


def _progress() -> bool:
    from focalinfer import log

    return log.progress_enabled()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="focalinfer")
def cli():
    """ImageNet classifiers from a PyTorch checkpoint to Top-1/Top-5 on Ascend 310P3 or onnxruntime."""


def bench_output_options(section: str, example: str):
    """--docs (the markdown whose generated ``section`` is rewritten) and --json, for a bench command."""

    def decorate(fn):
        fn = click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=str),
                          help="Also write the figures here.")(fn)
        return click.option("--docs", type=click.Path(dir_okay=False, path_type=str),
                            help=f"Markdown whose `{section}` section is rewritten (e.g. {example}).")(fn)

    return decorate


@cli.group()
def bench():
    """Measure a stage against its baseline (see docs/benchmarks.md)."""


# --- preprocess stage ---


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registry model whose eval transform to apply.")
@click.option("--images", required=True, type=click.Path(path_type=str), help="Flat image folder or class sub-folders.")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the .bin files and manifest.json.")
@click.option("--labels-out", type=click.Path(path_type=str), help="Write val_label.txt here (class-folder layout).")
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: CPU count).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (sorted order).")
@click.option("--preset", default="official", show_default=True, help="Transform preset: official | modelzoo.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "uint8"]),
              help="float32: normalised NCHW; uint8: cropped RGB NHWC, normalised by the model (om --aipp).")
@click.option("--rename", is_flag=True, help="Give images with dots or clashing names unique stems (see README).")
@click.option("--allow-skips", is_flag=True, help="Exit 0 even when undecodable images were skipped.")
@click.option("--force", is_flag=True, help="Replace .bin files made with another transform.")
@verbosity_options
@user_errors
def preprocess(model, images, out, labels_out, workers, limit, preset, dtype, rename, allow_skips, force):
    """Images → one .bin per image (float32 NCHW or uint8 NHWC) with the model's official eval transform."""
    from focalinfer.preprocess import preprocess as run_preprocess

    result = run_preprocess(
        model, images, out, labels_out=labels_out, workers=workers, limit=limit,
        preset=preset, dtype=dtype, force=force, rename=rename, progress=_progress(),
    )
    for name, reason in result.skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    for note in result.warnings:
        click.echo(f"warning: {note}", err=True)
    if labels_out and result.labels_file is None:
        click.echo(f"note: {images} is a flat folder, so no labels were written; use ImageNet's val_label.txt", err=True)
    if not labels_out and result.layout == "class-folders":
        click.echo(f"note: {images} holds class folders, but no label file was written (eval needs one); "
                   "rerun with --labels-out val_label.txt (the .bin files are reused)", err=True)
    click.echo(result.summary_line())
    if result.labels_file:
        click.echo(f"labels: {result.labels_file}")
    if result.skipped and not allow_skips:
        raise FocalinferError(
            f"{len(result.skipped)} images could not be decoded (listed in {result.manifest}); "
            "fix or remove them, or pass --allow-skips"
        )



@bench.command("preprocess")
@click.option("--count", default=500, show_default=True, type=click.IntRange(min=1), help="ImageNet-sized JPEGs to generate.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registry model whose eval transform to time.")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel run's processes (default: CPU count).")
@click.option("--json", "json_out", type=click.Path(path_type=str), help="Also write the figures here.")
@verbosity_options
@user_errors
def bench_preprocess_cmd(count, model, workers, json_out):
    """img/s with 1 and all workers next to the seed-style baseline; float32 vs uint8 files (img/s, bytes)."""
    import json

    from focalinfer.bench.preprocess import bench_preprocess
    from focalinfer.util import write_json_atomic

    figures = bench_preprocess(count=count, model=model, workers=workers)
    click.echo(json.dumps(figures, indent=2))
    n = figures["workers"]
    click.echo(
        f"bench preprocess ({figures['cpu']}, {n} workers): float32 {figures[f'workers_{n}_img_per_s']} img/s, "
        f"{figures['float32_bytes_per_image']} B/image; uint8 {figures[f'uint8_workers_{n}_img_per_s']} img/s, "
        f"{figures['uint8_bytes_per_image']} B/image; uint8 / float32 {figures[f'uint8_vs_float32_workers_{n}']}x"
    )
    if json_out:
        write_json_atomic(json_out, figures)


@bench.command("precision")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registry model (synthetic weights).")
@click.option("--samples", default=PRECISION_SAMPLES, show_default=True, type=click.IntRange(min=1), help="Samples of the verdict run.")
@click.option("--search-samples", default=32, show_default=True, type=click.IntRange(min=1),
              help="Samples of the two search runs (planted LayerNorm overflow, planted cancellation).")
@click.option("--no-search", is_flag=True, help="Time the verdict only.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: CPU count).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=str),
              help="Cache of the export and images (default ~/.cache/focalinfer/bench-precision).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=str), help="Also write the figures here.")
@verbosity_options
@user_errors
def bench_precision_cmd(model, samples, search_samples, no_search, threads, workdir, json_out):
    """Seconds of `focalinfer precision`: a verdict, and searches the lint and the bisection must solve."""
    import json

    from focalinfer.bench.precision import bench_precision
    from focalinfer.util import write_json_atomic

    figures = bench_precision(model=model, workdir=workdir, samples=samples, search_samples=search_samples,
                              search=not no_search, threads=threads, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(figures, indent=2))
    if json_out:
        write_json_atomic(json_out, figures)


@bench.command("profile")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registry model (synthetic weights).")
@click.option("--batch-sizes", default="1,4,16", show_default=True, help="Comma-separated batch sizes to profile.")
@click.option("--graph", default="rewritten", show_default=True, type=click.Choice(["rewritten", "naive"]),
              help="The rewritten export focalinfer runs, or the plain one (`--no-rewrites`).")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: CPU count).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=str),
              help="Cache of synthetic checkpoints and exports, shared with `bench all` (default ~/.cache/focalinfer/bench).")
@bench_output_options("profile", "docs/benchmarks.md")
@verbosity_options
@user_errors
def bench_profile_cmd(model, batch_sizes, graph, threads, workdir, docs, json_out):
    """Where one model's CPU time goes: per op type, and its GEMM kernels' GFLOP/s against this machine's limit."""
    from focalinfer.bench import parse_list
    from focalinfer.bench.profile import bench_profile
    from focalinfer.bench.report import profile_sentence, render_profile

    _check_bench_outputs(json_out, docs)
    figures = bench_profile(model, batch_sizes=parse_list(batch_sizes, int), graph=graph, threads=threads,
                            workdir=workdir, log=lambda line: click.echo(line, err=True))
    for p in figures["profiles"]:
        click.echo(profile_sentence(p, figures["gemm"]["limit_gflops"], graph))
    _write_bench_outputs(figures, json_out, docs, "profile", render_profile, "focalinfer bench profile")


def _check_bench_outputs(json_out: str | None, docs: str | None) -> None:
    """A bench's --json and --docs must be writable before it spends minutes measuring."""
    from focalinfer.util import ensure_writable_file

    for path, what in ((json_out, "JSON output"), (docs, "docs file")):
        if path:
            ensure_writable_file(path, what)


def _write_bench_outputs(figures: dict, json_out: str | None, docs: str | None, section: str, render, by: str):
    """The figures to --json, and ``render(figures)`` into the docs file's generated ``section``."""
    from focalinfer.bench.report import rewrite_sections
    from focalinfer.util import write_json_atomic

    if json_out:
        write_json_atomic(json_out, figures)
    if docs:
        rewrite_sections(docs, {section: render(figures)}, by=by)
        click.echo(f"wrote {docs}")


@bench.command("ray")
@click.option("--ray", "address", default="local", show_default=True,
              help="The cluster to measure on: local (a Ray started here), auto, ray://HOST:10001, HOST:PORT.")
@click.option("--images", default=512, show_default=True, type=click.IntRange(min=16),
              help="Null-model input files (224x224 float32, 588 KiB each) to run.")
@click.option("--batch-sizes", default="1,16", show_default=True,
              help="Comma-separated batch sizes to measure (the paper model uses 1 and 16).")
@click.option("--actors", type=click.IntRange(min=1), help="CPU actors (default: one per CPU of the cluster).")
@click.option("--cpu-figures", type=click.Path(dir_okay=False, path_type=str),
              help="`bench all` JSON whose best CPU img/s the paper model uses (default: docs/benchmarks.json).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=str),
              help="Null model and inputs (default ~/.cache/focalinfer/bench-ray).")
@bench_output_options("scaling", "docs/scaling.md")
@verbosity_options
@user_errors
def bench_ray_cmd(address, images, batch_sizes, actors, cpu_figures, workdir, docs, json_out):
    """What one Ray driver can feed: its write rate, the actors' cost per batch, bytes per image (null model)."""
    import json

    from focalinfer.bench import parse_list
    from focalinfer.bench.ray import bench_ray, render_scaling

    _check_bench_outputs(json_out, docs)
    figures = bench_ray(address=address, images=images, batch_sizes=parse_list(batch_sizes, int), actors=actors,
                        workdir=workdir, cpu_figures=cpu_figures, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(figures["ceilings"], indent=2))
    _write_bench_outputs(figures, json_out, docs, "scaling", render_scaling, "focalinfer bench ray")


@cli.command("sample-data")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the images and val_label.txt.")
@click.option("--count", default=48, show_default=True, type=click.IntRange(min=1), help="Images to write.")
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed writes the same files.")
@verbosity_options
@user_errors
def sample_data(out, count, seed):
    """Write synthetic ImageNet-val-like JPEGs (mixed sizes and modes) and a val_label.txt."""
    from focalinfer.samples import make_sample_set

    path = make_sample_set(out, count=count, seed=seed)
    click.echo(f"sample-data: {count} images and val_label.txt in {path} (synthetic, random labels)")


# --- models (registry, inspect) ---


@cli.command("models")
@click.option("--all", "show_all", is_flag=True, help="Family variants too, not only the lead models.")
@verbosity_options
@user_errors
def models_cmd(show_all):
    """List the registered models: input size, parameters, eval transform."""
    from focalinfer.models.checkpoint import parameter_count
    from focalinfer.registry import all_specs

    click.echo(f"{'name':<22} {'input':>5} {'params':>8}  transform (official)")
    for spec in all_specs():
        if spec.is_lead or show_all:
            t = spec.default_transform
            count = spec.params or parameter_count(spec.name)
            params = f"{count / 1e6:.1f}M" if count else "?"
            lead = "  (lead)" if spec.is_lead else ""
            click.echo(
                f"{spec.name:<22} {spec.input_size:>5} {params:>8}  resize {t.resize} {t.interpolation}, "
                f"crop {t.crop}, mean {t.mean}, std {t.std}{lead}"
            )


@cli.command("inspect")
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@verbosity_options
@user_errors
def inspect_cmd(checkpoint, as_json):
    """Report a checkpoint's layout, key and parameter counts, and the registry model it fits."""
    import json

    from focalinfer.models.checkpoint import inspect_checkpoint

    info = inspect_checkpoint(checkpoint)
    if as_json:
        click.echo(json.dumps(info.as_dict(), indent=2))
        return
    aliases = f" ({info.aliases} of them alias another key's tensor, counted once)" if info.aliases else ""
    click.echo(f"{info.path}: layout {info.layout!r}, {info.keys} keys{aliases}, {info.parameters:,} parameters, "
               f"{info.tensors_bytes / 2**20:.1f} MiB of tensors")
    click.echo(info.describe_match())


@cli.command("synthetic-checkpoint")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registry model whose keys and layout to write.")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Checkpoint file (.pth) to write.")
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed writes the same weights.")
@verbosity_options
@user_errors
def synthetic_checkpoint(model, out, seed):
    """Write deterministic random weights in the model's official checkpoint layout (not trained)."""
    from focalinfer.models.synthetic import make_checkpoint

    path = make_checkpoint(model, out, seed=seed)
    click.echo(f"synthetic-checkpoint: {path} ({model}, seed {seed}; NOT trained weights)")

# --- export stage ---


@cli.command("export")
@click.option("--model", "model_name", required=True, help="Registry name, e.g. focal-fast-s.")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Official .pth checkpoint.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="ONNX file to write; the report goes to <out>.report.json.")
@click.option("--batch-size", type=int, default=None, help="Static batch size (default 1).")
@click.option("--dynamic-batch", is_flag=True, help="Dynamic batch axis instead of a static batch.")
@click.option("--opset", type=int, default=11, show_default=True, help="ONNX opset, 11–17.")
@click.option("--no-rewrites", is_flag=True, help="Export the official code path as is.")
@click.option("--skip-rewrite", "skip_rewrites", multiple=True, metavar="NAME",
              help="Switch off one named rewrite (repeatable); see docs/export.md.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option("--parity-samples", type=int, default=4, show_default=True,
              help="Random inputs compared between onnxruntime and PyTorch.")
@click.option("--parity-data", type=click.Path(path_type=str), default=None,
              help="Directory of preprocessed .bin files to compare on as well.")
@click.option("--num-classes", type=click.IntRange(min=1),
              help="Build the model with a head of N classes (a fine-tuned checkpoint; `inspect` says N).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@verbosity_options
@user_errors
def export_command(model_name, checkpoint, out, batch_size, dynamic_batch, opset, no_rewrites,
                   skip_rewrites, no_simplify, parity_samples, parity_data, num_classes, force):
    """Export a checkpoint to ONNX with Ascend-friendly rewrites, check parity, lint it."""
    from focalinfer.export.exporter import export_onnx, format_summary
    from focalinfer.errors import UsageError

    if batch_size is not None and dynamic_batch:
        raise UsageError("pass either --batch-size N (static) or --dynamic-batch, not both")
    if no_rewrites and skip_rewrites:
        raise UsageError("--skip-rewrite has no effect with --no-rewrites; pass one of them")
    report = export_onnx(
        model_name, checkpoint, out, batch_size=1 if batch_size is None else batch_size, dynamic_batch=dynamic_batch,
        opset=opset, rewrites=not no_rewrites, skip_rewrites=skip_rewrites, simplify=not no_simplify,
        parity_samples=parity_samples, parity_data=parity_data, force=force, num_classes=num_classes,
    )
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(format_summary(report))


@cli.command("lint")
@click.argument("onnx_path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable findings on stdout.")
@click.option("--soc", default=DEFAULT_SOC, show_default=True, help="Target Ascend SoC.")
@click.option("--static", "expect_static", is_flag=True, help="Dynamic input/output dims are errors.")
@verbosity_options
@user_errors
def lint_command(onnx_path, as_json, soc, expect_static):
    """List an ONNX graph's ops and flag what ATC converts badly or not at all (exit 1 on errors)."""
    import json

    from focalinfer.export.lint import lint_onnx

    result = lint_onnx(onnx_path, soc=soc, expect_static=expect_static)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.format_text())
    sys.exit(0 if result.ok else 1)


# --- om stage (ATC) ---


@cli.command("om")
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The exported ONNX (export stage).")
@click.option("--batch-sizes", help="Comma list; one static-batch .om each.  [default: 1]")
@click.option("--soc", default=DEFAULT_SOC, show_default=True, help="ATC --soc_version.")
@click.option("--out-dir", default=OM_DIR, show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Where the .om files, logs and sidecars go.")
@click.option("--model", "model_name", help="Registry model whose ATC options to apply (default: from the export report).")
@click.option("--precision-mode", help="ATC --precision_mode, e.g. allow_fp32_to_fp16 or force_fp32.")
@click.option("--op-precision-ini", type=click.Path(dir_okay=False, path_type=str),
              help="ATC --op_precision_mode ini (OpType=mode lines); replaces the registry's.")
@click.option("--aipp", is_flag=True, help="The .om takes uint8 NHWC files (preprocess --dtype uint8) and "
              "normalises on the chip; writes <out-dir>/<model>.aipp.cfg.")
@click.option("--preset", default="official", show_default=True, help="Transform preset whose mean/std --aipp applies.")
@click.option("--dynamic-batch", "dynamic_batch", metavar="GEARS",
              help="One .om with these batch gears (e.g. 1,4,8,16) instead of one per --batch-sizes.")
@click.option("--keep-dtype", type=click.Path(dir_okay=False, path_type=str),
              help="ATC --keep_dtype file: ONNX node names (one per line) kept in fp32.")
@click.option("--precision", "precision_report", type=click.Path(path_type=str),
              help="A `focalinfer precision` report (precision.json) for this ONNX: its mode and keep list.")
@click.option("--dry-run", is_flag=True, help="Print the atc commands; needs no CANN.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="atc runs in parallel.")
@click.option("--force", is_flag=True, help="Rebuild even when the .om is up to date.")
@verbosity_options
@user_errors
def om_command(onnx_path, batch_sizes, soc, out_dir, model_name, precision_mode, op_precision_ini, aipp, preset,
               dynamic_batch, keep_dtype, precision_report, dry_run, jobs, force):
    """ONNX → one .om per batch size (or one dynamic-batch .om) with CANN's atc (skips up-to-date ones)."""
    from focalinfer.atc import build_om
    from focalinfer.errors import UsageError

    if preset != "official" and not aipp:
        raise UsageError(f"--preset {preset} only chooses the mean/std of --aipp; add --aipp or leave it out")
    if dynamic_batch is not None and batch_sizes is not None:
        raise UsageError("pass either --batch-sizes (one static .om each) or --dynamic-batch GEARS (one .om), not both")
    builds = build_om(onnx_path, batch_sizes or "1", soc=soc, out_dir=out_dir, model=model_name,
                      precision_mode=precision_mode, op_precision_ini=op_precision_ini,
                      dry_run=dry_run, jobs=jobs, force=force, aipp=aipp, preset=preset,
                      dynamic_batch=dynamic_batch, keep_dtype=keep_dtype, precision_report=precision_report)
    if not dry_run:
        for build in builds:
            click.echo(f"{build.label}: {build.status}: {build.om_path}")


@cli.command("precision")
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The exported fp32 ONNX (the one given to atc).")
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=str),
              help="A preprocess output folder (.bin files + manifest.json).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for precision.json and keep_dtype.cfg.")
@click.option("--samples", default=PRECISION_SAMPLES, show_default=True, type=click.IntRange(min=1),
              help="Images to run, spread over the folder.")
@click.option("--mode", default="force_fp16", show_default=True,
              type=click.Choice(["force_fp16", "allow_fp32_to_fp16", "allow_mix_precision"]),
              help="The ATC --precision_mode to emulate.")
@click.option("--min-cosine", default=PRECISION_MIN_COSINE, show_default=True, type=float,
              help="Safe only if every sample's logits have at least this cosine similarity to fp32.")
@click.option("--min-top1", default=PRECISION_MIN_TOP1, show_default=True, type=float,
              help="Safe only if at least this % of samples keep their fp32 top-1 class.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Samples per onnxruntime run (default 8; a static ONNX: its batch).")
@click.option("--max-runs", default=PRECISION_MAX_RUNS, show_default=True, type=click.IntRange(min=1),
              help="Emulated runs the keep-list search may make.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: CPU count).")
@verbosity_options
@user_errors
def precision_command(onnx_path, input_dir, out, samples, mode, min_cosine, min_top1, batch_size, max_runs,
                      threads):
    """Emulate ATC's fp16 on the CPU: fp16-safe, a keep-dtype list, or fp32 (exit 1 when nothing safe is found)."""
    from focalinfer.precision import run_precision

    result = run_precision(onnx_path, input_dir, out, samples=samples, mode=mode, min_cosine=min_cosine,
                           min_top1=min_top1, batch_size=batch_size, max_runs=max_runs, threads=threads,
                           progress=_progress())
    click.echo(result.table())
    click.echo(f"report: {result.report_path}" + (f", keep list: {result.keep_path}" if result.keep_path else ""))
    sys.exit(0 if result.safe else 1)


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@verbosity_options
@user_errors
def doctor_command(as_json):
    """Report atc, the CANN environment, ais_bench, onnxruntime, torch, CPUs and Ray (and its cluster, if reachable)."""
    import json

    from focalinfer.doctor import doctor_report, format_doctor

    report = doctor_report()
    click.echo(json.dumps(report, indent=2) if as_json else format_doctor(report))


# --- infer and eval: the options they share ---


def inference_options(fn):
    """The options of a model run, shared by ``infer`` and ``eval`` (one definition, one help text)."""
    options = [
        click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKENDS),
                     help="auto: ais_bench for .om; for .onnx the CPU backend measured fastest here (cached)."),
        click.option("--threads", type=click.IntRange(min=1), help="CPU backend threads (default: CPU count)."),
        click.option("--precision", default="fp32", show_default=True, type=click.Choice(list(PRECISIONS)),
                     help="bf16: OpenVINO on CPUs with AMX/AVX-512 BF16 only; prints its top-1 agreement with fp32."),
        click.option("--allow-transform-mismatch", is_flag=True,
                     help="Run on .bin files that another model's eval transform made (the manifest says which)."),
        click.option("--force", is_flag=True, help="Replace another model's outputs in the result folder."),
        click.option("--device", default="0", show_default=True,
                     help="Device id, or a comma list: one process each (ais_bench's --device)."),
        click.option("--ais-bench-mode", default="auto", show_default=True, type=click.Choice(["auto", "api", "cli"]),
                     help="ais_bench through its Python API (resumable) or `python3 -m ais_bench`."),
        click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     help="Split the batches over a Ray cluster's actors (one per NPU for .om, CPU actors for .onnx): "
                          "auto (the cluster running here / RAY_ADDRESS), ray://HOST:10001, HOST:PORT, or nothing: "
                          "a Ray started here for this run. Nodes read the files from a path they all see."),
        click.option("--ray-actors", type=click.IntRange(min=1),
                     help="With --ray: actors to start (default: one per NPU, or one per --threads CPUs, default 1)."),
        click.option("--ray-ship-inputs", is_flag=True,
                     help="With --ray: the driver reads the inputs and sends them through Ray's object store."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# --- infer stage ---


@cli.command("infer")
@click.option("--model-file", required=True, type=click.Path(dir_okay=False, path_type=str), help="X.om or X.onnx.")
@click.option("--input", "input_dir", type=click.Path(path_type=str),
              help="Folder of .bin/.npy files; without it, pure inference on generated data.")
@click.option("--output", default=WORK_DIR + "/", show_default=True, type=click.Path(path_type=str),
              help=f"Folder that receives the result folder and its <dirname>{SUMMARY_SUFFIX}.")
@click.option("--output-dirname", help="Results go to <output>/<dirname> (default: a timestamp).")
@click.option("--outfmt", default="TXT", show_default=True, type=OUTFMT, metavar=OUTFMT_METAVAR,
              help="Output file format, as ais_bench's --outfmt.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Needed for a dynamic-batch model; must match a static one.")
@click.option("--loop", default=1, show_default=True, type=click.IntRange(min=1), help="Runs per batch (pure inference: runs).")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0), help="Untimed runs first.")
@click.option("--pure-data-type", default="zero", show_default=True, type=click.Choice(["zero", "random"]),
              help="Data for pure inference.")
@inference_options
@verbosity_options
@user_errors
def infer_command(model_file, input_dir, output, output_dirname, outfmt, batch_size, backend, device, loop,
                  warmup, threads, precision, pure_data_type, ais_bench_mode, force, allow_transform_mismatch,
                  ray, ray_actors, ray_ship_inputs):
    """Run a model over preprocessed .bin files; writes ais_bench's per-image outputs and summary."""
    from focalinfer.infer import run_inference

    result = run_inference(
        model_file, input_dir, output=output, output_dirname=output_dirname, outfmt=outfmt.upper(),
        batch_size=batch_size, backend=backend, device=device, loop=loop, warmup=warmup, threads=threads,
        force=force, progress=_progress(), pure_data_type=pure_data_type, ais_bench_mode=ais_bench_mode,
        allow_transform_mismatch=allow_transform_mismatch, precision=precision, ray=ray, ray_actors=ray_actors,
        ray_ship_inputs=ray_ship_inputs,
    )
    from focalinfer.infer.report import speed_text

    kept = f", {result.files_kept} kept from an earlier run" if result.files_kept else ""
    speed = speed_text(result)  # issue 20: no images/s without images; devices added
    click.echo(f"infer: {result.files_written} files written to {result.output_dir} "
               f"({result.backend}, batch {result.batch_size}{speed}{kept})")
    if result.summary_path:
        click.echo(f"summary: {result.summary_path}")
    _echo_ray(result.ray)


def _echo_ray(section: dict | None) -> None:
    """One line per Ray run: its actors and the images/s they gave together."""
    if not section:
        return
    rate = f", {section['images_per_s']:.1f} images/s in total" if section["images_per_s"] else ""
    nodes = len({a["node_id"] for a in section["actors"]})
    click.echo(f"ray: {len(section['actors'])} actors on {nodes} nodes, {section['images']} images{rate}")


# --- eval stage ---


def gate_options(when: str, reference: str):
    """--max-drop / --min-ratio: the accuracy gate of eval, compare and report (docs/eval.md)."""

    def decorate(fn):
        fn = click.option("--min-ratio", type=click.FloatRange(min=0), metavar="R",
                          help=f"{when} when Acc@1 is below R × {reference} (MLPerf: 0.99).")(fn)
        return click.option("--max-drop", type=click.FloatRange(min=0), metavar="PTS",
                            help=f"{when} when Acc@1 is more than PTS points below {reference}.")(fn)

    return decorate


@cli.command("eval")
@click.option("--labels", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="val_label.txt: '<image file name> <class index>' per line (the class is the last field).")
@click.option("--om", type=click.Path(dir_okay=False, path_type=str), help="Run this .om (ais_bench) first.")
@click.option("--onnx", type=click.Path(dir_okay=False, path_type=str),
              help="Run this .onnx on the CPU first (onnxruntime or OpenVINO: --backend).")
@click.option("--results", type=click.Path(file_okay=False, path_type=str),
              help="Score an existing ais_bench/focalinfer result folder instead.")
@click.option("--input", "input_dir", default=DATABIN_DIR, show_default=True, type=click.Path(path_type=str),
              help="Preprocessed .bin files (with --om / --onnx).")
@click.option("--output", default=RESULT_JSON, show_default=True, type=click.Path(path_type=str),
              help="result.json (a folder or a path ending in /: result.json inside it); inference outputs go to "
                   "the folder of the same name beside it.")
@click.option("--output-dirname", help="With --om / --onnx: outputs go to <folder of --output>/<dirname> instead.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Inference batch size (with --results: only when nothing recorded one; a different one is an error).")
@click.option("--outfmt", type=OUTFMT, metavar=OUTFMT_METAVAR,
              help="Output format to write (default TXT) or, with --results, to read when several exist.")
@click.option("--output-dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="What BIN outputs hold (an fp16-output .om writes float16); TXT and NPY say it themselves.")
@click.option("--num-classes", type=click.IntRange(min=1),
              help="The model's class count when no record says it (a record that disagrees is an error).")
@click.option("--model", "model_name", help="Registry model name, when no record says it (gives the class count).")
@click.option("--allow-missing", is_flag=True,
              help="Go on, and exit 0, when labelled images have no input file or no (valid) output.")
@click.option("--allow-bad-labels", is_flag=True,
              help="Score without label lines that do not parse or name a class the model lacks (else exit 1).")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=str),
              help="An earlier result.json (e.g. the CPU fp32 run): ΔAcc with its interval and p-value, the flips.")
@gate_options("With --reference: exit 1", "the reference's")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=str),
              help="Append a row in timm's results-table columns (+ backend, precision, batch, images/s).")
@click.option("--real-labels", type=click.Path(dir_okay=False, path_type=str),
              help="ImageNet-ReaL's real.json: ReaL accuracy beside the original.")
@inference_options
@verbosity_options
@user_errors
def eval_command(labels, om, onnx, results, input_dir, output, output_dirname, batch_size, outfmt, output_dtype,
                 num_classes, model_name, backend, threads, precision, allow_missing, allow_bad_labels,
                 allow_transform_mismatch, force, device, ais_bench_mode, ray, ray_actors, ray_ship_inputs,
                 reference, max_drop, min_ratio, csv_path, real_labels):
    """Top-1/Top-5 of a model's outputs against val_label.txt, joined by image name, into result.json."""
    from focalinfer.errors import UsageError
    from focalinfer.pipeline import evaluate
    from focalinfer.postprocess.scoring import require_complete

    if sum(bool(source) for source in (om, onnx, results)) != 1:
        raise UsageError("pass exactly one of --om X.om, --onnx X.onnx or --results DIR")
    if om and not om.lower().endswith(".om"):
        raise UsageError(f"--om {om}: expected an .om file (ATC output); use --onnx for an ONNX model")
    if onnx and not onnx.lower().endswith(".onnx"):
        raise UsageError(f"--onnx {onnx}: expected an .onnx file; use --om for an Ascend .om")
    if results and (output_dirname or force or device != "0" or ais_bench_mode != "auto" or ray):
        raise UsageError("--output-dirname, --force, --device, --ais-bench-mode and --ray apply to the inference "
                         "--om / --onnx runs; --results only reads")
    amend = _eval_extras(reference, max_drop, min_ratio, csv_path, real_labels)
    result, path = evaluate(
        labels, results_dir=results, model_file=om or onnx, input_dir=input_dir, output=output,
        output_dirname=output_dirname, outfmt=outfmt, batch_size=batch_size, model=model_name,
        num_classes=num_classes, output_dtype=output_dtype,
        backend=backend if (om or onnx) else None, allow_missing=allow_missing,
        allow_bad_labels=allow_bad_labels, force=force, progress=_progress(),
        allow_transform_mismatch=allow_transform_mismatch, threads=threads, precision=precision,
        device=device, ais_bench_mode=ais_bench_mode, amend=amend,
        ray=ray, ray_actors=ray_actors, ray_ship_inputs=ray_ship_inputs,
    )
    for note in result.warnings:
        click.echo(f"warning: {note}", err=True)
    for line in result.detail_lines():
        click.echo(line)
    click.echo(result.summary_line(path))
    _finish_eval_extras(result, csv_path)
    require_complete(result, allow_missing)
    _gate_exit(result.extra.get("reference"))


def _eval_extras(reference, max_drop, min_ratio, csv_path, real_labels):
    """Check eval's --reference / gate / --csv / --real-labels before any work; the step adding their figures."""
    from focalinfer.errors import UsageError
    from focalinfer.metrics.paired import Gate
    from focalinfer.postprocess.amend import result_amender
    from focalinfer.postprocess.results_csv import check_results_csv
    from focalinfer.util import ensure_writable_file

    gate = Gate(max_drop, min_ratio)
    if gate.active and not reference:
        raise UsageError("--max-drop and --min-ratio gate a run against an earlier one: add --reference RESULT.json")
    if csv_path:
        ensure_writable_file(csv_path, "results CSV")
        check_results_csv(csv_path)
    return result_amender(real_labels, reference, gate)


def _finish_eval_extras(result, csv_path) -> None:
    if csv_path:
        from focalinfer.postprocess.results_csv import append_results_csv

        click.echo(f"csv: a row added to {append_results_csv(csv_path, result.summary)}")


def _gate_exit(block) -> None:
    """Exit 1 with the gate's one line when it failed."""
    from focalinfer.postprocess.paired import gate_failure

    failure = gate_failure(block)
    if failure:
        raise FocalinferError(failure)


@cli.command("compare")
@click.argument("reference", type=click.Path(file_okay=False, path_type=str))
@click.argument("candidate", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "json_out", type=click.Path(path_type=str),
              help="Write the full report here (a folder or a path ending in /: compare.json inside it).")
@click.option("--worst", default=10, show_default=True, type=click.IntRange(min=0), help="Rows in the worst-images table.")
@click.option("--min-cosine", default=COMPARE_MIN_COSINE, show_default=True, type=float,
              help="Exit 1 when any image's cosine similarity is below this.")
@click.option("--outfmt", type=OUTFMT, metavar=OUTFMT_METAVAR,
              help="Format to read when a folder holds several.")
@click.option("--reference-dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="What REFERENCE's BIN outputs hold.")
@click.option("--candidate-dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="What CANDIDATE's BIN outputs hold (an fp16-output .om writes float16).")
@click.option("--allow-missing", is_flag=True, help="Exit 0 even when some images have outputs on one side only.")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=str),
              help="val_label.txt: flips each way, ΔAcc@1/ΔAcc@5 with a paired interval and McNemar's p-value.")
@gate_options("With --labels: exit 1", "REFERENCE's")
@verbosity_options
@user_errors
def compare_command(reference, candidate, json_out, worst, min_cosine, outfmt, reference_dtype, candidate_dtype,
                    allow_missing, labels, max_drop, min_ratio):
    """Per-image agreement of two result folders (REFERENCE first, e.g. ONNX fp32, then the OM's)."""
    import contextlib

    from focalinfer import log, runlock
    from focalinfer.errors import FocalinferError
    from focalinfer.postprocess.compare import compare_results
    from focalinfer.errors import UsageError
    from focalinfer.metrics.paired import Gate
    from focalinfer.postprocess.paired import gate_failure
    from focalinfer.util import ensure_writable_file, json_output_path, write_json_atomic

    gate = Gate(max_drop, min_ratio)
    if gate.active and not labels:
        raise UsageError("--max-drop and --min-ratio gate Acc@1, which needs the labels: add --labels val_label.txt")
    with contextlib.ExitStack() as stack:
        if json_out:
            json_out = ensure_writable_file(json_output_path(json_out, "compare.json"), "compare report")
            stack.enter_context(runlock.hold(json_out, "compare", log=log.info))
        report = compare_results(reference, candidate, worst=worst, min_cosine=min_cosine,
                                 reference_outfmt=outfmt, candidate_outfmt=outfmt, reference_dtype=reference_dtype,
                                 candidate_dtype=candidate_dtype, allow_missing=allow_missing, labels_file=labels,
                                 gate=gate)
        click.echo(report.format_table())
        if json_out:
            write_json_atomic(json_out, report.as_dict())
            click.echo(f"report: {json_out}")
    if not report.passed:
        gate_line = gate_failure(report.accuracy)
        if gate_line and report.summary["verdict"] == gate_line:
            raise FocalinferError(gate_line)
        raise FocalinferError(f"{candidate} disagrees with {reference}: {report.summary['verdict']}")


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False, path_type=str),
              help="The report file to write.")
@click.option("--format", "fmt", default="html", show_default=True, type=click.Choice(REPORT_FORMATS),
              help="html: one self-contained page; md: the same content as Markdown (for CI logs).")
@gate_options("Gate: a run fails (exit 1)", "the first run's")
@click.option("--precision", "precision_report", type=click.Path(path_type=str),
              help="The precision check's precision.json (default: <ONNX folder>/precision/ when it matches).")
@click.option("--bench", "bench_json", type=click.Path(dir_okay=False, path_type=str),
              help="A `bench all --json` file: its images/s per batch size join the plot.")
@click.option("--title", help="The page title (default: the model's name).")
@verbosity_options
@user_errors
def report_command(runs, out, fmt, max_drop, min_ratio, precision_report, bench_json, title):
    """One report of result.json RUNS (the first is the reference): accuracy, Δ and gate, flips, speed, provenance."""
    from focalinfer.metrics.paired import Gate
    from focalinfer.report import build_report

    result = build_report(runs, out, fmt=fmt, gate=Gate(max_drop, min_ratio), precision=precision_report,
                          bench=bench_json, title=title)
    click.echo(f"report: {result.path} ({result.runs} runs, reference {runs[0]})")
    if result.gate_failures:
        raise FocalinferError(f"{result.gate_failures[0]}" + (f" (and {len(result.gate_failures) - 1} more runs)"
                                                              if len(result.gate_failures) > 1 else ""))


@bench.command("eval")
@click.option("--count", default=50_000, show_default=True, type=click.IntRange(min=1), help="TXT outputs to generate.")
@click.option("--baseline-count", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Files the seed-style baseline is timed on (then scaled to --count).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Scorer runs; the best counts.")
@click.option("--workers", type=click.IntRange(min=1), help="Parser processes (default: CPU count).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=str), help="Also write the figures here.")
@verbosity_options
@user_errors
def bench_eval_command(count, baseline_count, repeats, workers, json_out):
    """Scoring files/s on generated ais_bench TXT outputs, next to the seed's np.loadtxt-per-file way."""
    import json

    from focalinfer.bench.eval import bench_eval
    from focalinfer.util import write_json_atomic

    figures = bench_eval(count=count, baseline_count=baseline_count, repeats=repeats, workers=workers)
    click.echo(json.dumps(figures, indent=2))
    ours, base, bar = figures["focalinfer"], figures["baseline"], figures["bar"]
    click.echo(
        f"bench eval: focalinfer {ours['files_per_s']:.0f} files/s ({count} in {ours['seconds']:.2f} s), "
        f"seed-style {base['files_per_s']:.0f} files/s ({base['note']}), ratio {figures['ratio']}x; "
        f"{bar['count']} files in {bar['projected_seconds_for_bar_count']:.2f} s "
        f"({'meets' if bar['met'] else 'MISSES'} the {bar['seconds']:.0f} s bar)"
    )
    if json_out:
        write_json_atomic(json_out, figures)


# --- benchmarks ---


def _command_line(prefix: str) -> str:
    """The flags given on the command line, as a user would retype them (for reports)."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = [prefix]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        parts.append(param.opts[0] if param.is_flag else f"{param.opts[0]} {shlex.quote(str(value))}")
    return " ".join(parts)


@bench.command("all")
@click.option("--quick", is_flag=True, help="A few minutes: one model, batch 1 and 16, short rounds "
              "(writes only the outputs you name).")
@click.option("--models", help="Comma-separated registry names (default: the lead models).")
@click.option("--batch-sizes", help="Comma-separated, default 1,4,8,16,32,64 (quick: 1,16).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=str),
              help="JSON figures (full run default: docs/benchmarks.json).")
@click.option("--docs", type=click.Path(dir_okay=False, path_type=str),
              help="Markdown whose generated sections are rewritten (full run default: docs/benchmarks.md).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=str),
              help="PNG of img/s against batch size (full run default: docs/benchmarks.png; needs focalinfer[plot]).")
@click.option("--skip", help="Comma-separated stages to leave out: preprocess, eval, inference.")
@click.option("--backends", help="Comma-separated from ort, ov, ov_tput, ort_naive, ov_naive, ort_cpu, eager "
              "(default: all installed; quick: all but ort_cpu, ov_tput).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Threads for every backend (0: all CPUs).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=str),
              help="Cache of synthetic checkpoints and exports (default ~/.cache/focalinfer/bench).")
@click.option("--resume", is_flag=True, help="Reuse per-model figures of an interrupted run with the same settings.")
@verbosity_options
@user_errors
def bench_all_cmd(quick, models, batch_sizes, json_out, docs, plot, skip, backends, threads, workdir, resume):
    """Every stage against its baseline and this machine's GEMM limit → JSON, docs/benchmarks.md, plot."""
    import os

    from focalinfer.bench import bench_all, parse_list, terminal_summary

    command = _command_line("focalinfer bench all")
    if os.environ.get("MAKELEVEL"):
        command += "  (via make bench)"
    result = bench_all(
        quick=quick, models=parse_list(models), batch_sizes=parse_list(batch_sizes, int), json_out=json_out,
        docs=docs, plot=plot, workdir=workdir, threads=threads, skip=parse_list(skip),
        backends=parse_list(backends), resume=resume,
        command=command, log=lambda line: click.echo(line, err=True),
    )
    click.echo(terminal_summary(result))


def main():
    cli(prog_name="focalinfer")


if __name__ == "__main__":
    main()
