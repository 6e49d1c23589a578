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

# --- models (registry, inspect) ---

# --- export stage ---

# --- om stage (ATC) ---

# --- infer stage ---

# --- eval stage ---


def main():
    cli(prog_name="focalinfer")


if __name__ == "__main__":
    main()
