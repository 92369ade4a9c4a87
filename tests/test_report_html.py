"""The HTML report page: one file with the tables and the figures embedded, checked in a
real headless Chromium (Debian's ``chromium`` package; CI installs it, see .ci/run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("markdown_it")

from coffea_ad.report.html import markdown_to_html, write_html


def chromium() -> str:
    """Path of the headless browser; CI must have it (a skip there would hide the check)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium not found on CI: .ci/run installs Debian's 'chromium' package")
    pytest.skip("chromium not installed (apt-get install chromium)")


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The DOM after the page loaded and its scripts ran, as Chromium serialises it."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cells: list[str] = []
        self.links: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")
        elif tag == "a":
            self.links.append(a.get("href", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def parse(dom: str) -> _Dom:
    p = _Dom()
    p.feed(dom)
    return p


@pytest.fixture
def report_dir(tmp_path) -> Path:
    from coffea_ad.plotting import plot_roc

    out = tmp_path / "report"
    fpr = np.array([0.001, 0.01, 0.1, 1.0])
    tpr = np.array([0.1, 0.4, 0.8, 1.0])
    plot_roc({"AE": (fpr, tpr, 0.87)}, out / "roc.png", formats=("pdf",))
    (out / "report.md").write_text(
        "# A report\n\n## Yields\n\n| dataset | events |\n|---|---|\n| qcd | 1234 ± 35 |\n"
        "| svj | 56.7 ± 7.5 |\n\n![ROC curve](roc.png)\n")
    return out


def test_page_embeds_figures_and_tables_and_loads_in_chromium(report_dir, tmp_path):
    page = write_html(report_dir / "report.md", title="A report")
    assert page == report_dir / "report.html"
    text = page.read_text()
    # self-contained: the figure is inside the page, not referenced
    assert 'src="roc.png"' not in text
    assert "data:image/png;base64," in text
    # moved away from its figures, the page still shows them
    alone = tmp_path / "alone"
    alone.mkdir()
    moved = alone / "report.html"
    shutil.copy(page, moved)
    dom = parse(dump_dom(moved, tmp_path))
    assert [c.strip() for c in dom.cells] == ["dataset", "events", "qcd", "1234 ± 35", "svj",
                                              "56.7 ± 7.5"]
    assert len(dom.images) == 1
    from matplotlib.image import imread

    width = imread(report_dir / "roc.png").shape[1]
    # the page's load script recorded what Chromium decoded: the PNG's own width
    assert int(dom.images[0]["data-width"]) == width
    assert "roc.pdf" in dom.links  # the vector version, beside the page


def test_missing_figure_is_refused_naming_it(report_dir):
    (report_dir / "roc.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"\['roc.png'\]"):
        write_html(report_dir / "report.md")
    _, missing = markdown_to_html("![x](nope.png)", report_dir)
    assert missing == ["nope.png"]
    assert not (report_dir / "report.html").exists()
    assert not [p for p in report_dir.iterdir() if re.search(r"\.tmp$", p.name)]
