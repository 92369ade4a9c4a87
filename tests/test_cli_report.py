"""``coffea-ad report OUT`` through the real console script, on run outputs made here with
``coffea-ad run``. The numbers on the page are checked against the saved histograms: yields
summed here, and the AUC recomputed from the score bins with the Mann-Whitney sum.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import hist
import numpy as np
import pytest

SCRIPT = Path(sys.executable).with_name("coffea-ad")


def _cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          check=False,
                          env={"OMP_NUM_THREADS": "1", "PATH": str(SCRIPT.parent),
                               "MPLBACKEND": "Agg", "HOME": str(Path.home())})
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def svj_run(small_fileset, tiny_ae_onnx, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report_svj")
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    out = base / "run"
    _cli("run", "svj", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
         "--executor", "iterative", "--no-progress", "--set", "tag_threshold=0.3",
         "-o", str(out))
    return out


def _binned_auc(h_bkg: hist.Hist, h_sig: hist.Hist) -> float:
    """P(score_sig > score_bkg) + 1/2 P(same bin), from 1-d score histograms (flow bins
    included, in order)."""
    b, s = h_bkg.values(flow=True), h_sig.values(flow=True)
    below = np.concatenate([[0.0], np.cumsum(b)[:-1]])
    return float(np.sum(s * (below + 0.5 * b)) / (s.sum() * b.sum()))


def test_svj_report(svj_run):
    from coffea.util import load

    res = _cli("report", str(svj_run))
    page = svj_run / "report" / "report.md"
    assert str(page) in res.stdout
    text = page.read_text()
    for png in ("roc_sic.png", "scores.png", "mass.png"):
        assert (svj_run / "report" / png).stat().st_size > 1000, png
        assert f"({png})" in text
    h = load(svj_run / "histograms.coffea")["hists"]["events"][{"systematic": "nominal"}]
    # yields per dataset and category, as the page prints them (4 significant digits)
    for d in ("qcd", "svj"):
        cells = [f"{h[{'dataset': d, 'category': hist.loc(c)}].sum(flow=True).value:.4g}"
                 for c in (0, 1, 2)]
        row = next(line for line in text.splitlines() if line.startswith(f"| {d} |"))
        assert [c.split(" ± ")[0].strip() for c in row.strip("|").split("|")[1:]] == cells
    # svj is the signal (is_signal in the fileset metadata written by generate_fileset)
    auc = _binned_auc(h[{"dataset": "qcd", "category": sum, "mt": sum}],
                      h[{"dataset": "svj", "category": sum, "mt": sum}])
    row = next(line for line in text.splitlines() if line.startswith(("| svj | 0.", "| svj | 1.")))
    assert float(row.split("|")[2]) == pytest.approx(auc, abs=5e-4)
    # cutflow and provenance sections
    cutflow = json.loads((svj_run / "cutflow.json").read_text())["cutflow"]
    assert f"| all | {cutflow['qcd']['all']} | 1 |" in text
    assert "## Run" in text
    assert "sha256" in text


def test_named_roles_and_errors(svj_run, tmp_path):
    out = tmp_path / "rep"
    _cli("report", str(svj_run), "--background", "qcd", "--no-plots", "-o", str(out))
    text = (out / "report.md").read_text()
    assert "Score performance" not in text  # no signal named: no ROC section
    assert not list(out.glob("*.png"))
    bad = _cli("report", str(svj_run), "--signal", "zprime", ok=False)
    assert bad.returncode == 2
    assert "'zprime' is not in the histograms" in bad.stderr
    assert "qcd" in bad.stderr
    empty = _cli("report", str(tmp_path), ok=False)
    assert empty.returncode == 1
    assert "histograms.coffea" in empty.stderr


def test_abcd_histogram_report_with_region_a_below_the_deta_cut(svj_run, tmp_path):
    """``--histogram abcd`` (no category axis) with A = score >= cut and |Δη_jj| < 1.5: the
    integrated observed/predicted on the page equals B C / D summed here from the saved
    histogram's bins."""
    from coffea.util import load

    h = load(svj_run / "histograms.coffea")["hists"]["abcd"][
        {"systematic": "nominal", "dataset": "qcd", "mt": sum}]
    edges = h.axes["score"].edges
    # ABCD cuts must be bin edges: the edge nearest the median qcd score
    per_bin = h[{"deta_jj": sum}].values(flow=True)
    frac = np.cumsum(per_bin)[:-1] / per_bin.sum()  # fraction below each edge
    x_cut = float(edges[np.argmin(np.abs(frac - 0.5))])
    out = tmp_path / "abcd"
    _cli("report", str(svj_run), "--histogram", "abcd", "--background", "qcd", "--no-plots",
         "--abcd-x-cut", repr(x_cut), "--abcd-y-axis", "deta_jj", "--abcd-y-cut", "1.5",
         "--abcd-y-pass", "below", "-o", str(out))
    text = (out / "report.md").read_text()
    v = h.values(flow=True)  # score x deta_jj, flow bins included
    sx = np.concatenate([[-np.inf], edges]) >= x_cut  # bin lower edges
    sy = np.concatenate([[-np.inf], h.axes["deta_jj"].edges]) < 1.5
    a, b, c, d = (v[np.ix_(mx, my)].sum() for mx, my in ((sx, sy), (sx, ~sy), (~sx, sy), (~sx, ~sy)))
    assert min(a, b, c, d) > 0
    line = next(x for x in text.splitlines() if x.startswith(f"A: score ≥ {x_cut:g} and deta_jj < 1.5"))
    ratio = float(line.split("observed/predicted = ")[1].split(" ± ")[0])
    assert ratio == pytest.approx(a / (b * c / d), abs=6e-4)
    assert "| dataset | all events |" in text


def test_bumphunt_report_has_mjj_fit(small_fileset, tiny_ae_onnx, tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    out = tmp_path / "run"
    _cli("run", "bumphunt", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
         "--executor", "iterative", "--no-progress", "--set", "min_pt=200", "-o", str(out))
    _cli("report", str(out), "--no-plots")
    text = (out / "report" / "report.md").read_text()
    assert "BumpHuntProcessor" in text.splitlines()[0]
    assert "## Bump hunt per category" in text
    assert re.search(r"^\| 0 \| ", text, flags=re.MULTILINE), "a row for category 0"
    # the sideband histogram gets its own page, linked from the main one
    assert "[sideband](sideband/report.md)" in text
    assert (out / "report" / "sideband" / "report.md").is_file()


def test_sr_classifier_finds_a_localized_excess():
    """Data = background + a narrow excess in one feature, template = the background law:
    the data-vs-template classifier must single out the excess (CATHODE's premise)."""
    from coffea.processor import column_accumulator as acc

    from coffea_ad.report import sr_classifier

    rng = np.random.default_rng(5)

    def block(x, w=None):
        n = len(x)
        mjj = rng.uniform(3300, 3700, n)
        return {"data_x": acc(x), "data_mjj": acc(mjj),
                "data_weight": acc(np.ones(n) if w is None else w),
                "cvae_x": acc(rng.normal(size=(n, 3))), "cvae_mjj": acc(mjj),
                "cvae_weight": acc(np.ones(n))}

    bkg = block(rng.normal(size=(2000, 3)))
    sig_x = rng.normal(size=(150, 3))
    sig_x[:, 0] = rng.normal(2.5, 0.2, 150)
    sig = block(sig_x)
    sig["cvae_x"] = acc(rng.normal(size=(150, 3)))  # the template knows nothing of the signal
    res = sr_classifier({"bkg": bkg, "sig": sig}, ["sig"])
    assert res["n_data"] == res["n_template"] == 2150
    assert res["signals"]["sig"]["auc"] > 0.85
    assert res["signals"]["sig"]["max_sic"] > 2.0
    # without the excess the classifier cannot tell data from template
    null = sr_classifier({"bkg": block(rng.normal(size=(2000, 3)))}, [])
    assert abs(null["auc_data_vs_template"] - 0.5) < 0.05


def test_resonant_report(small_fileset, tmp_path):
    pytest.importorskip("torch")
    from coffea.util import load

    from coffea_ad.training import cvae

    model = cvae.run({"epochs": 2, "sr_low": 1300.0, "sr_high": 1700.0, "min_pt": 200.0,
                      "hidden": [16, 16], "threads": 1}, small_fileset, tmp_path / "cvae")["onnx"]
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    out = tmp_path / "run"
    _cli("run", "resonant", "--fileset", str(fileset), "--model", model, "--executor",
         "iterative", "--no-progress", "--set", "min_pt=200", "--set",
         "signal_region=1300:1700", "--set", "samples_per_event=2", "-o", str(out))
    _cli("report", str(out))
    rep = out / "report"
    text = (rep / "report.md").read_text()
    # the main page is the signal region only: its yields are the SR cutflow counts
    cutflow = load(out / "histograms.coffea")["cutflow"]
    n_sr = {d: list(c.values())[2] for d, c in cutflow.items()}
    assert f"| qcd | {n_sr['qcd']:.4g} ± " in text
    assert "| dataset | category 1 |" in text
    assert f"{n_sr['qcd'] + n_sr['svj']} data rows, {2 * (n_sr['qcd'] + n_sr['svj'])} " \
           "template rows" in text
    assert re.search(r"^\| svj \| 0\.\d{3} \| ", text.split("classifier data vs")[1], re.MULTILINE)
    for name in ("mass_j1", "tau21_j2", "tau32_j1"):
        assert (rep / f"template_{name}.png").stat().st_size > 1000
    assert (rep / "sr_classifier_roc_sic.png").is_file()
