"""The report in a real browser: headless Chromium (Debian's `chromium`, installed by `make test`'s
`browser` step) loads report.html; the page logs no error, loads nothing from outside, every
picture decodes, nothing overflows the window, and its screenshot is not blank.

The checks run in a copy of the page with one script added (the report itself has none): it
records load, script and content-security-policy errors and, once the page has loaded, writes
what it found into the DOM, which `--dump-dom` prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clitools import run
from report_chain import GAINED, LOST, report_runs  # noqa: F401  (the module's chain of runs)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROBE = """<script>
window.__fi = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__fi.push(t && t !== window && t.tagName ? 'failed to load ' + t.tagName + ' ' + (t.src || '').slice(0, 60)
                                                 : 'script error: ' + e.message);
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__fi.push('blocked by the page policy: ' + e.blockedURI + ' (' + e.violatedDirective + ')');
});
var consoleError = console.error;
console.error = function () { window.__fi.push('console: ' + Array.prototype.join.call(arguments, ' ')); };
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var out = document.createElement('pre');
  out.id = 'fi-check';
  var wide = Array.prototype.filter.call(document.querySelectorAll('.tablewrap'), function (w) {
    return w.scrollWidth > w.clientWidth;
  }).map(function (w) { return w.textContent.slice(0, 60); });
  out.textContent = JSON.stringify({errors: window.__fi, images: images, sections: document.querySelectorAll('section').length,
                                    wide_tables: wide,
                                    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium (the `browser` step, as root)")
    pytest.skip("chromium is not installed on this machine (as root, `make browser` installs Debian's chromium); "
                "the report's browser check cannot run without it")


def chromium(args: list[str], profile: Path, timeout: int = 120) -> str:
    """Run headless Chromium in its own process group; stop that group (only ours) whatever happens."""
    proc = subprocess.Popen([chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in {timeout} s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    return out


def browser_check(page: Path, tmp_path: Path, extra_body: str = "") -> dict:
    """Load a copy of ``page`` with the probe and return what it saw."""
    text = page.read_text()
    # The probe is the only script; the rest of the policy (no network) stays as the report wrote it.
    text = text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    text = text.replace("<style>", PROBE + "<style>", 1).replace("</main>", extra_body + "</main>", 1)
    probe = tmp_path / f"probe_{page.stem}.html"
    probe.write_text(text)
    dom = chromium(["--dump-dom", "--virtual-time-budget=10000", "--window-size=1280,2000", probe.as_uri()],
                   tmp_path / "profile-dom")
    found = re.search(r'<pre id="fi-check">(.*?)</pre>', dom, re.S)
    assert found, f"the probe wrote nothing; the DOM ends with {dom[-500:]!r}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def page(report_runs):
    work, reference, om, _, _ = report_runs
    out = work / "report.html"
    run("report", reference, om, "--out", out, "--max-drop", 5)
    return out


def test_the_page_loads_without_errors_and_every_picture_decodes(page, tmp_path):
    seen = browser_check(page, tmp_path)
    assert seen["errors"] == []
    assert len(seen["images"]) == 2 + len(LOST) + len(GAINED)   # two plots, the flipped images
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert seen["sections"] == 7
    assert seen["scrollWidth"] <= seen["innerWidth"], "the page is wider than the window"
    assert seen["wide_tables"] == [], "tables wider than the page (they scroll sideways)"


def test_the_probe_sees_a_broken_picture_and_a_network_load(page, tmp_path):
    """The check above can fail: a picture that does not decode and one from the network are both caught."""
    broken = '<img alt="broken" src="data:image/png;base64,AAAA"><img alt="remote" src="http://127.0.0.1:9/x.png">'
    seen = browser_check(page, tmp_path, broken)
    assert any(e.startswith("failed to load IMG") for e in seen["errors"])
    assert any("blocked by the page policy: http://127.0.0.1:9/x.png" in e for e in seen["errors"])
    assert [i["width"] for i in seen["images"] if i["alt"] in ("broken", "remote")] == [0, 0]


def test_the_screenshot_is_a_page_not_a_blank(page, tmp_path):
    shot = page.with_name("report_screenshot.png")
    chromium([f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", page.as_uri()],
             tmp_path / "profile-shot")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20                        # text, tables and plots, not one colour
    background = np.median(pixels)
    assert (np.abs(pixels - background) > 40).mean() > 0.03
    # Not all of it in one band: the upper and lower halves both hold content.
    for half in (pixels[:1000], pixels[1000:]):
        assert half.std() > 10
