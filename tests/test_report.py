"""The markdown report: numbers on the page equal the statistics computed from the events."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from coffea_ad.histos import score_mass_histogram
from coffea_ad.report import write_report
from coffea_ad.stats import auc, dijet_function

pytest.importorskip("iminuit")
pytest.importorskip("mplhep")

MJJ_EDGES = np.linspace(1500.0, 5000.0, 36)


def _sample_mjj(rng: np.random.Generator, n: int) -> np.ndarray:
    """m_jj drawn from the dijet function (p1, p2, p3) = (10, 5, 0.2) by inverse CDF."""
    grid = np.linspace(MJJ_EDGES[0], MJJ_EDGES[-1], 20001)
    cdf = np.cumsum(dijet_function(grid / 13000.0, 1.0, 10.0, 5.0, 0.2))
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return np.interp(rng.uniform(size=n), cdf, grid)


def _events(seed: int):
    rng = np.random.default_rng(seed)
    n_b, n_s = 150_000, 3000
    bkg = {
        "mjj": _sample_mjj(rng, n_b),
        "score": rng.lognormal(-1.0, 0.6, n_b),
        "category": rng.choice([0, 1, 2], size=n_b, p=[0.5, 0.4, 0.1]),
        "y": rng.normal(size=n_b),  # independent second variable: ABCD must close
    }
    sig = {
        "mjj": rng.normal(2500.0, 100.0, n_s),
        "score": rng.lognormal(0.0, 0.6, n_s),
        "category": rng.choice([0, 1, 2], size=n_s, p=[0.2, 0.3, 0.5]),
        "y": rng.normal(size=n_s),
    }
    return bkg, sig


def _fill(h: hist.Hist, bkg: dict, sig: dict) -> hist.Hist:
    keys = [k for k in ("category", "score", "mjj", "y") if k in h.axes.name]
    h.fill(dataset="qcd", **{k: bkg[k] for k in keys}, **(
        {"systematic": "nominal"} if "systematic" in h.axes.name else {}))
    h.fill(dataset="zprime", **{k: sig[k] for k in keys}, **(
        {"systematic": "nominal"} if "systematic" in h.axes.name else {}))
    return h


def test_report_numbers_match_the_event_level_statistics(tmp_path) -> None:
    bkg, sig = _events(1)
    h = _fill(score_mass_histogram(mass="mjj", mass_label="m_jj [GeV]", mass_edges=MJJ_EDGES),
              bkg, sig)
    # these weights stand for events at some luminosity (1 fb^-1 here): sigma is computed
    path, numbers = write_report(h, tmp_path, backgrounds=["qcd"], signals=["zprime"],
                                 plots=False, lumi_fb=1.0)
    text = path.read_text()
    # yields: sum of weights per category, as counted from the events inside the m_jj range
    inside = (bkg["mjj"] >= MJJ_EDGES[0]) & (bkg["mjj"] < MJJ_EDGES[-1])
    for c in (0, 1, 2):
        assert numbers.yields["qcd"][str(c)][0] == np.sum(inside & (bkg["category"] == c))
    # AUC from the histogram's 120 log bins is the event-level AUC to within the binning
    in_s = (sig["mjj"] >= MJJ_EDGES[0]) & (sig["mjj"] < MJJ_EDGES[-1])
    event_auc = auc(bkg["score"][inside], sig["score"][in_s])
    assert numbers.performance["zprime"]["auc"] == pytest.approx(event_auc, abs=0.005)
    assert f"{numbers.performance['zprime']['auc']:.3f}" in text
    # sigma_max = S/sqrt(B) at the best cut, recomputed from the events at that cut
    cut = numbers.performance["zprime"]["best_cut"]
    s_pass = np.sum(sig["score"][in_s] >= cut)
    b_pass = np.sum(bkg["score"][inside] >= cut)
    assert numbers.performance["zprime"]["sigma_max"] == pytest.approx(s_pass / np.sqrt(b_pass),
                                                                     rel=1e-9)
    # the injected signal comes back with mu = 1 within its uncertainty in every category
    for c in ("0", "1", "2"):
        res = numbers.bumphunt[c]["zprime"]
        assert abs(res["mu"] - 1.0) < 3 * res["mu_err"], (c, res)
    assert numbers.bumphunt["2"]["zprime"]["z"] > 3  # 50% of the signal in 10% of the bkg
    assert "| 2 | " in text
    assert f"{numbers.bumphunt['2']['zprime']['mu']:.3g}" in text


def test_report_links_the_plots_it_draws(tmp_path) -> None:
    bkg, sig = _events(3)
    for ev in (bkg, sig):  # one category keeps the number of (slow to draw) figures small
        ev["category"] = np.ones_like(ev["category"])
    h = _fill(score_mass_histogram(mass="mjj", mass_edges=MJJ_EDGES, categories=(1,)), bkg, sig)
    path, _ = write_report(h, tmp_path, backgrounds=["qcd"], signals=["zprime"])
    text = path.read_text()
    for png in ("roc_sic.png", "scores.png", "mass.png", "bumphunt_cat1_zprime.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text


def test_report_abcd_section_closes_for_an_independent_second_variable(tmp_path) -> None:
    bkg, sig = _events(2)
    h = hist.Hist(
        hist.axis.StrCategory([], growth=True, name="dataset"),
        hist.axis.IntCategory([0, 1, 2], name="category"),
        hist.axis.Regular(40, 0.0, 4.0, name="score"),
        hist.axis.Regular(20, -2.0, 2.0, name="y"),
        hist.axis.Variable([1500.0, 2000.0, 2500.0, 3000.0, 5000.0], name="mt"),
        storage=hist.storage.Weight(),
    )
    bkg["mt"], sig["mt"] = bkg.pop("mjj"), sig.pop("mjj")
    h.fill(dataset="qcd", **{k: bkg[k] for k in ("category", "score", "y", "mt")})
    h.fill(dataset="zprime", **{k: sig[k] for k in ("category", "score", "y", "mt")})
    path, numbers = write_report(h, tmp_path, backgrounds=["qcd"], signals=["zprime"],
                                 abcd_x_cut=0.6, abcd_y_axis="y", abcd_y_cut=0.0, plots=False)
    assert numbers.abcd["ndf"] == 4
    assert numbers.abcd["p_value"] > 0.01
    assert abs(numbers.abcd["integrated_ratio"] - 1) < 3 * numbers.abcd["integrated_ratio_err"]
    assert "ABCD closure" in path.read_text()
    assert "Bump hunt" not in path.read_text()  # an m_T histogram gets no dijet fit


def test_report_refuses_unknown_datasets_and_axes(tmp_path) -> None:
    from coffea_ad.errors import UnknownNameError

    h = score_mass_histogram(mass="mjj", mass_edges=MJJ_EDGES)
    h.fill(dataset="qcd", systematic="nominal", category=0, score=1.0, mjj=2000.0)
    with pytest.raises(UnknownNameError, match="unknown dataset 'ttbar'; valid datasets: qcd"):
        write_report(h, tmp_path, backgrounds=["ttbar"])
    with pytest.raises(ValueError, match="needs abcd_x_cut= and abcd_y_cut="):
        write_report(h, tmp_path, backgrounds=["qcd"], abcd_y_axis="score", plots=False)


def test_report_reads_a_histogram_without_categories_with_region_a_below_the_y_cut(tmp_path) -> None:
    """The svj processor's hists["abcd"] layout (dataset x systematic x score x |Δη| x m_T, no
    category axis) with A = score above the cut and |Δη| below 1.5; the integrated
    observed/predicted on the page equals B C / D summed by hand from the histogram."""
    from coffea_ad.processors.svj import abcd_histogram

    rng = np.random.default_rng(8)
    n = 40_000
    h = abcd_histogram("deta_jj")
    score = rng.exponential(0.3, n)
    deta = rng.uniform(0.0, 3.0, n)
    mt = 1500.0 + rng.exponential(700.0, n)
    h.fill(dataset="qcd", systematic="nominal", score=score, deta_jj=deta, mt=mt)
    h.fill(dataset="svj", systematic="nominal", score=rng.exponential(0.6, 2000),
           deta_jj=rng.uniform(0.0, 1.5, 2000), mt=1500.0 + rng.exponential(900.0, 2000))
    x_cut = float(h.axes["score"].edges[np.searchsorted(h.axes["score"].edges, 0.3)])
    y_cut = 1.5
    assert y_cut in h.axes["deta_jj"].edges
    path, numbers = write_report(h, tmp_path, backgrounds=["qcd"], signals=["svj"],
                                 abcd_x_cut=x_cut, abcd_y_axis="deta_jj", abcd_y_cut=y_cut,
                                 abcd_y_pass="below", plots=False)
    # by hand from the events that went into the histogram (inside the m_T range)
    lo, hi = h.axes["mt"].edges[[0, -1]]
    inside = (mt >= lo) & (mt < hi)
    sx, sy = score[inside] >= x_cut, deta[inside] < y_cut
    a, b, c, d = (np.sum(m) for m in (sx & sy, sx & ~sy, ~sx & sy, ~sx & ~sy))
    assert numbers.abcd["integrated_ratio"] == pytest.approx(a / (b * c / d), rel=1e-9)
    # score and |Δη| are independent here: the closure holds
    assert abs(numbers.abcd["integrated_ratio"] - 1) < 3 * numbers.abcd["integrated_ratio_err"]
    text = path.read_text()
    assert "deta_jj < 1.5" in text
    assert numbers.yields["qcd"]["all"][0] == pytest.approx(n)  # flow bins included
    assert "| dataset | all events |" in text


def test_unnormalised_histograms_get_no_sigma_and_no_sensitivity_call(tmp_path) -> None:
    bkg, sig = _events(1)
    h = _fill(score_mass_histogram(mass="mjj", mass_label="m_jj [GeV]", mass_edges=MJJ_EDGES),
              bkg, sig)
    path, numbers = write_report(h, tmp_path, backgrounds=["qcd"], signals=["zprime"],
                                 plots=False)
    perf = numbers.performance["zprime"]
    assert np.isnan(perf["sigma_max"])
    assert np.isnan(perf["sensitive"])
    text = path.read_text()
    assert "n/a (unnormalised)" in text
    assert "## Yields (unnormalised: sums of generator weights)" in text
    assert "| yes |" not in text
    assert "| no |" not in text
