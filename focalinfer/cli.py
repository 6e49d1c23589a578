"""The focalinfer command line: one click group, one subcommand per stage.

Commands only parse flags and call library functions; a FocalinferError becomes one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys

import click

from focalinfer import __version__
from focalinfer.errors import FocalinferError


def user_errors(fn):
    """Turn FocalinferError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FocalinferError as e:
            click.echo(f"focalinfer: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("focalinfer: interrupted; completed outputs are kept, rerun to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="focalinfer")
def cli():
    """ImageNet classifiers from a PyTorch checkpoint to Top-1/Top-5 on Ascend 310P3 or onnxruntime."""


@cli.group()
def bench():
    """Measure a stage against its baseline (see docs/benchmarks.md)."""


# --- preprocess stage ---


@cli.command()
@click.option("--model", default="focal-fast-s", show_default=True, help="Registry model whose eval transform to apply.")
@click.option("--images", required=True, type=click.Path(path_type=str), help="Flat image folder or class sub-folders.")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the .bin files and manifest.json.")
@click.option("--labels-out", type=click.Path(path_type=str), help="Write val_label.txt here (class-folder layout).")
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: CPU count).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (sorted order).")
@click.option("--preset", default="official", show_default=True, help="Transform preset: official | modelzoo.")
@click.option("--rename", is_flag=True, help="Give images with dots or clashing names unique stems (see README).")
@click.option("--allow-skips", is_flag=True, help="Exit 0 even when undecodable images were skipped.")
@click.option("--force", is_flag=True, help="Replace .bin files made with another transform.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def preprocess(model, images, out, labels_out, workers, limit, preset, rename, allow_skips, force, quiet):
    """Images → one float32 NCHW .bin per image with the model's official eval transform."""
    from focalinfer.preprocess import preprocess as run_preprocess

    result = run_preprocess(
        model, images, out, labels_out=labels_out, workers=workers, limit=limit,
        preset=preset, force=force, rename=rename, progress=not quiet,
    )
    for name, reason in result.skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    if labels_out and result.labels_file is None:
        click.echo(f"note: {images} is a flat folder, so no labels were written; use ImageNet's val_label.txt", err=True)
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
@click.option("--model", default="focal-fast-s", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Parallel run's processes (default: CPU count).")
@click.option("--json", "json_out", type=click.Path(path_type=str), help="Also write the figures here.")
@user_errors
def bench_preprocess_cmd(count, model, workers, json_out):
    """img/s with 1 and all workers, next to the seed-style baseline."""
    import json

    from focalinfer.preprocess.bench import bench_preprocess
    from focalinfer.util import write_json_atomic

    figures = bench_preprocess(count=count, model=model, workers=workers)
    click.echo(json.dumps(figures, indent=2))
    if json_out:
        write_json_atomic(json_out, figures)


@cli.command("sample-data")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the images and val_label.txt.")
@click.option("--count", default=48, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@user_errors
def sample_data(out, count, seed):
    """Write synthetic ImageNet-val-like JPEGs (mixed sizes and modes) and a val_label.txt."""
    from focalinfer.samples import make_sample_set

    path = make_sample_set(out, count=count, seed=seed)
    click.echo(f"sample-data: {count} images and val_label.txt in {path} (synthetic, random labels)")


# --- models (registry, inspect) ---


@cli.command("models")
@click.option("--all", "show_all", is_flag=True, help="Family variants too, not only the lead models.")
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
@user_errors
def inspect_cmd(checkpoint, as_json):
    """Report a checkpoint's layout, key and parameter counts, and the registry model it fits."""
    import json

    from focalinfer.models.checkpoint import inspect_checkpoint

    info = inspect_checkpoint(checkpoint)
    if as_json:
        click.echo(json.dumps(info.as_dict(), indent=2))
        return
    click.echo(f"{info.path}: layout {info.layout!r}, {info.keys} keys, {info.parameters:,} parameters, "
               f"{info.tensors_bytes / 2**20:.1f} MiB of tensors")
    click.echo(f"matches: {info.model or 'no registered model'}")


@cli.command("synthetic-checkpoint")
@click.option("--model", default="focal-fast-s", show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=str))
@click.option("--seed", default=0, show_default=True)
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
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@user_errors
def export_command(model_name, checkpoint, out, batch_size, dynamic_batch, opset, no_rewrites,
                   skip_rewrites, no_simplify, parity_samples, parity_data, force):
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
        parity_samples=parity_samples, parity_data=parity_data, force=force,
    )
    click.echo(format_summary(report))


@cli.command("lint")
@click.argument("onnx_path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable findings on stdout.")
@click.option("--soc", default="Ascend310P3", show_default=True, help="Target Ascend SoC.")
@click.option("--static", "expect_static", is_flag=True, help="Dynamic input/output dims are errors.")
@user_errors
def lint_command(onnx_path, as_json, soc, expect_static):
    """List an ONNX graph's ops and flag what ATC converts badly or not at all (exit 1 on errors)."""
    import json

    from focalinfer.export.lint import lint_onnx

    result = lint_onnx(onnx_path, soc=soc, expect_static=expect_static)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.format_text())
    sys.exit(0 if result.ok else 1)


# --- om stage (ATC) ---

# --- infer stage ---

# --- eval stage ---


def main():
    cli(prog_name="focalinfer")


if __name__ == "__main__":
    main()
