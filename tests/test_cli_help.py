"""Every option says what it does, and the README's synopses name only options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from focalinfer.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


@pytest.mark.parametrize("path, command", list(commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_option_has_help_text(path, command):
    missing = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"focalinfer {' '.join(path)}: options without help: {missing}"
    result = CliRunner().invoke(cli, [*path, "--help"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and " ".join((command.help or "").split("\n")[0].split()) in shown
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.opts[0] in shown and " ".join(param.help.split()[:3]) in shown


def readme_synopses() -> list[tuple[tuple[str, ...], list[str]]]:
    """(command path, --options) of each `focalinfer ...` line in the README's sh blocks."""
    text = README.read_text()
    synopses = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("focalinfer "):
                continue
            words = line.split()[1:]
            path = tuple(words[:2]) if words[0] == "bench" else (words[0],)
            synopses.append((path, re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)))
    return synopses


def test_readme_synopses_match_the_commands():
    known = {path: command for path, command in commands()}
    synopses = readme_synopses()
    assert len(synopses) >= 8
    for path, options in synopses:
        assert path in known, f"README shows `focalinfer {' '.join(path)}`, which does not exist"
        have = {opt for p in known[path].params for opt in p.opts + p.secondary_opts}
        unknown = [o for o in options if o not in have]
        assert not unknown, f"README: `focalinfer {' '.join(path)}` has no option {unknown}"


def test_options_of_the_readme_commands_are_documented():
    """An option the README's synopsis leaves out is explained in the README or a docs/ page."""
    text = README.read_text() + "".join(p.read_text() for p in (README.parent / "docs").glob("*.md"))
    known = {path: command for path, command in commands()}
    for path, _ in readme_synopses():
        undocumented = [p.opts[0] for p in known[path].params if isinstance(p, click.Option) and p.opts[0] not in text]
        assert not undocumented, f"focalinfer {' '.join(path)}: {undocumented} appear in no README or docs page"


@pytest.mark.parametrize("path", [("infer",), ("eval",), ("compare",)])
def test_outfmt_choices_are_shown_as_the_default_is_spelled(path):
    shown = CliRunner().invoke(cli, [*path, "--help"]).output
    assert "--outfmt [TXT|NPY|BIN]" in shown and "[txt|npy|bin]" not in shown


def test_eval_onnx_help_names_both_cpu_backends():
    """--backend auto may pick OpenVINO: the help may not promise onnxruntime."""
    shown = " ".join(CliRunner().invoke(cli, ["eval", "--help"]).output.split())
    assert "--onnx FILE Run this .onnx on the CPU first (onnxruntime or OpenVINO: --backend)." in shown
