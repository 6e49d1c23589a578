"""Running the CLI in tests: no traceback ever, and the one line a failure prints."""

from __future__ import annotations

from click.testing import CliRunner

from focalinfer.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert "Traceback" not in result.output
    return result


def error_line(result, prefix: str = "focalinfer: ") -> str:
    lines = [line for line in result.output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.output
    return lines[0]
