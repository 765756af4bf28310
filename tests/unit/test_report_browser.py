"""The run report in a real browser: headless Chromium decodes every plot and logs no console error.

The page under test is the report with two scripts added: one first in ``<head>`` records console errors,
uncaught errors and failed loads, one at the end of ``<body>`` checks, once the page has loaded, that each ``<img>``
decoded to a picture with a size, and writes the outcome into the page, which ``--dump-dom`` prints. Skipped
where Chromium is not installed (Debian: ``apt-get install chromium``).
"""

import re
import shutil
import subprocess

import pytest

from jobs.report_render import render_html
from tests.unit.test_report import report_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

RECORD_ERRORS = """<script>
window.__errors = [];
const original = console.error.bind(console);
console.error = (...args) => { window.__errors.push(args.join(" ")); original(...args); };
window.addEventListener("error", (e) => window.__errors.push("error: " + (e.message || e.target.src)), true);
</script>"""
CHECK_IMAGES = """<pre id="browser-check">pending</pre><script>
window.addEventListener("load", () => {  // after every image has loaded or failed
  const results = [...document.images].map((img) => img.complete && img.naturalWidth > 0 ? "ok" : "broken");
  document.getElementById("browser-check").textContent =
    "images=" + results.length + " " + results.join(",") + " errors=" + JSON.stringify(window.__errors);
});
</script>"""


def browser_check(html: str, tmp_path) -> str:
    """What the page reports after Chromium loaded it: image count, each image's outcome, errors."""
    page = re.sub(r"<head>", "<head>" + RECORD_ERRORS, html, count=1).replace("</body>", CHECK_IMAGES + "</body>")
    assert RECORD_ERRORS in page and CHECK_IMAGES in page
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=15000",
        "--dump-dom",
        f"file://{tmp_path}/report.html",
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return found.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
def test_report_plots_decode_and_the_page_logs_no_console_errors(tmp_path):
    result = browser_check(render_html(report_data()), tmp_path)
    assert result == "images=7 " + ",".join(["ok"] * 7) + " errors=[]", result


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
def test_the_browser_check_catches_a_broken_plot_and_a_console_error(tmp_path):
    html = render_html(report_data())
    broken = re.sub(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAA', html, count=1)
    broken = broken.replace("</body>", "<script>console.error('boom')</script></body>")
    result = browser_check(broken, tmp_path)
    assert result.startswith("images=7 broken,ok") and "boom" in result, result
