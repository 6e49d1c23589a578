"""docs/benchmarks.md's generated sections."""

from __future__ import annotations

from focalinfer.bench import report


def test_generated_sections_are_replaced_and_hand_written_text_is_kept():
    text = ("# Benchmarks\n\nLead's note on preprocess.\n\n"
            + report.MARKER_BEGIN.format(name="run", by="focalinfer bench all") + "\nold run\n" + report.MARKER_END.format(name="run")
            + "\n\nHand-written eval remarks, *kept*.\n")
    once = report.replace_sections(text, {"run": "new run", "inference": "table"})
    assert "old run" not in once and "new run" in once
    assert once.startswith("# Benchmarks\n\nLead's note on preprocess.\n\n")
    assert "\n\nHand-written eval remarks, *kept*.\n" in once
    # A section not in the file is appended after the hand-written text.
    assert once.index("Hand-written eval remarks") < once.index("table")
    twice = report.replace_sections(once, {"run": "newer run"})
    assert twice == once.replace("new run", "newer run")
    assert twice.count(report.MARKER_END.format(name="run")) == 1


def test_sections_with_regex_characters_in_the_body_are_written_verbatim():
    body = r"a \1 backslash and $dollar (group)"
    out = report.replace_sections("", {"run": "x"})
    out = report.replace_sections(out, {"run": body})
    assert body in out
