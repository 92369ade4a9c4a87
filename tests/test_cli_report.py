"""``coffea-ad report OUT`` through the real console script, on run outputs made here with
``coffea-ad run``. The numbers on the page are checked against the saved histograms: yields
summed here, and the AUC recomputed from the score bins with the Mann-Whitney sum.
"""

from __future__ import annotations

import json
import os
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
                               "MPLBACKEND": "Agg", "HOME": str(Path.home()),
                               # a checkout put first on the path must be the code tested
                               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def svj_run(small_fileset, tiny_ae_onnx, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report_svj")
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    out = base / "run"
    proc = _cli("run", "svj", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
                "--executor", "iterative", "--no-progress", "--set", "tag_threshold=0.3",
                "-o", str(out))
    (base / "run.stderr").write_text(proc.stderr)
    return out


def test_run_json_records_the_whole_configuration(svj_run, tiny_ae_onnx):
    from coffea_ad.inference.contract import ModelContract, file_sha256, sidecar_path

    info = json.loads((svj_run / "run.json").read_text())
    conf = info["configuration"]
    assert conf["command"][:2] == ["coffea-ad", "run"]
    assert conf["processor"]["name"] == "svj"
    settings = conf["processor"]["settings"]
    assert settings["tag_threshold"] == 0.3  # set on the command line
    assert settings["lumi_fb"] is None  # a default, recorded too
    assert conf["processor"]["set_on_command_line"] == {"tag_threshold": 0.3}
    assert conf["model"]["sha256"] == file_sha256(tiny_ae_onnx)
    contract = ModelContract.read(sidecar_path(tiny_ae_onnx))
    assert conf["model"]["contract"]["inputs"] == {i.name: i.features for i in contract.inputs}
    assert conf["executor"]["executor"] == "iterative"
    assert conf["executor"]["progress"] is False
    assert conf["executor"]["schema"] == "GeneratedPFNanoAODSchema"
    assert "coffea" in info["versions"]
    # generated samples: no cross-reference warnings from the schema
    stderr = (svj_run.parent / "run.stderr").read_text()
    assert "cross-reference" not in stderr


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
        # the first such row after the heading (the configuration table lists datasets too)
        row = next(line for line in text.split("## Yields")[1].splitlines()
                   if line.startswith(f"| {d} |"))
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
    assert "expected" in empty.stderr
    assert "run.json" in empty.stderr


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


def test_training_datasets_are_not_background_unless_asked(tmp_path):
    from coffea_ad.errors import ReportInputError
    from coffea_ad.report.run import dataset_roles, training_datasets

    (tmp_path / "m.json").write_text(json.dumps({"training": {"datasets": ["qcd_train"]}}))
    trained = training_datasets([str(tmp_path / "m.onnx"), str(tmp_path / "absent.onnx")])
    assert trained == ["qcd_train"]
    datasets = ["qcd_train", "qcd", "svj"]
    meta = {"svj": {"metadata": {"is_signal": True}}}
    assert dataset_roles(datasets, meta, exclude=trained) == (["qcd"], ["svj"])
    assert dataset_roles(datasets, meta) == (["qcd_train", "qcd"], ["svj"])
    assert dataset_roles(datasets, meta, signals=["svj"], exclude=trained) == (["qcd"], ["svj"])
    # named explicitly: the user asked for it
    assert dataset_roles(datasets, meta, backgrounds=["qcd_train"], exclude=trained)[0] == [
        "qcd_train"]
    with pytest.raises(ReportInputError, match=r"training datasets left out: \['qcd_train'\]"):
        dataset_roles(["qcd_train", "svj"], meta, exclude=trained)
def test_abcd_cut_off_a_bin_edge_is_refused_in_one_line_or_snapped(svj_run, tmp_path):
    args = ("report", str(svj_run), "--histogram", "abcd", "--background", "qcd", "--no-plots",
            "--abcd-x-cut", "0.3", "--abcd-y-axis", "deta_jj", "--abcd-y-cut", "1.5",
            "--abcd-y-pass", "below")
    bad = _cli(*args, "-o", str(tmp_path / "a"), ok=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    from coffea.util import load

    edges = load(svj_run / "histograms.coffea")["hists"]["abcd"].axes["score"].edges
    below, above = edges[edges <= 0.3][-1], edges[edges > 0.3][0]
    nearest = below if 0.3 - below < above - 0.3 else above
    error = next(ln for ln in bad.stderr.splitlines() if ln.startswith("Error:"))
    assert "--abcd-x-cut 0.3 is not a bin edge of the 'score' axis" in error
    assert f"[{below:.6g}, {above:.6g}]" in error
    good = _cli(*args, "--snap-cuts", "-o", str(tmp_path / "b"))
    assert "note: --abcd-x-cut 0.3 is not a bin edge" in good.stderr
    text = (tmp_path / "b" / "report.md").read_text()
    assert f"use {nearest:.6g}, the nearest edge" in text
    assert f"A: score ≥ {nearest:.6g}" in text


@pytest.fixture(scope="module")
def lumi_run(small_fileset, tiny_ae_onnx, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report_lumi")
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    out = base / "run"
    _cli("run", "svj", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
         "--executor", "iterative", "--no-progress", "--set", "tag_threshold=0.3",
         "--set", "lumi_fb=10", "-o", str(out))
    _cli("report", str(out))
    return out


def test_yields_at_a_luminosity_are_sigma_times_lumi_over_sumw(svj_run, lumi_run,
                                                               small_fileset, tmp_path):
    from coffea.util import load

    raw = load(svj_run / "histograms.coffea")["hists"]["events"]
    scaled = load(lumi_run / "histograms.coffea")["hists"]["events"]
    meta = small_fileset["qcd"]["metadata"]
    # by hand: xsec [pb] x 1000 [fb/pb] x 10 [fb^-1] / sum of generator weights
    factor = meta["xsec"] * 1000.0 * 10.0 / meta["sumw"]
    for c in (0, 1, 2):
        sel = {"dataset": "qcd", "systematic": "nominal", "category": hist.loc(c)}
        assert scaled[sel].sum(flow=True).value == pytest.approx(
            raw[sel].sum(flow=True).value * factor, rel=1e-9)
    text = (lumi_run / "report" / "report.md").read_text()
    assert "## Yields (events at 10 fb⁻¹)" in text
    assert "10 fb⁻¹ (13.6 TeV)" in text  # the label line under the title
    assert "n/a (unnormalised)" not in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| svj | 0."))
    assert row.split("|")[-2].strip() in ("yes", "no")  # the sensitivity call is made
    _cli("report", str(svj_run), "--no-plots", "-o", str(tmp_path / "raw"))
    raw_text = (tmp_path / "raw" / "report.md").read_text()
    assert "n/a (unnormalised)" in raw_text


def test_report_html_page_shows_the_configuration_and_every_figure_in_chromium(lumi_run,
                                                                               tmp_path):
    from test_report_html import dump_dom, parse

    report = lumi_run / "report"
    md = (report / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"roc_sic.png", "scores.png", "mass.png"} <= set(figures)
    for png in figures:  # every figure as PNG and as vector PDF
        assert (report / png).is_file()
        assert (report / png).with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    # the run configuration comes before any result
    assert md.index("## Run configuration") < md.index("## Yields")
    assert "| lumi_fb | 10.0 |" in md
    assert "| tag_threshold | 0.3 |" in md
    dom = parse(dump_dom(report / "report.html", tmp_path))
    assert len(dom.images) == len(figures)
    assert all(int(img["data-width"]) > 100 for img in dom.images)
    assert "lumi_fb" in dom.cells
    assert "Simulation (Pythia 8 + coffea-ad detector response)" in md
    assert "CMS" not in md.split("## Run configuration")[0]


def test_report_on_real_cms_files_gets_the_cms_label(pfnano_file, tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"tt": {"files": {str(pfnano_file): "Events"},
                                          "metadata": {"label": "CMS PFNano tt", "xsec": 833.9,
                                                       "sumw": 10.0}}}))
    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    out = tmp_path / "run"
    _cli("run", "svj", "--fileset", str(fileset), "--model", str(model), "--executor",
         "iterative", "--no-progress", "--set", "min_pt=0", "--set", "lumi_fb=2",
         "--set", "tag_threshold=0.3", "-o", str(out))
    _cli("report", str(out), "--cms-label", "Preliminary", "--sqrt-s", "13000")
    text = (out / "report" / "report.md").read_text()
    assert "*CMS Simulation Preliminary, 2 fb⁻¹ (13 TeV)*" in text
    assert "| CMS PFNano tt | CMS simulation |" in text  # configuration: name and origin
    assert "coffea-ad detector response" not in text
