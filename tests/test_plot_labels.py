"""Plot labels follow where the events come from; legends name datasets from the fileset."""

from __future__ import annotations

import hist
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("mplhep")

from coffea_ad.plotting import plot_mass_by_category, plot_roc
from coffea_ad.plotting.labels import (
    PALETTE,
    PlotLabel,
    dataset_origin,
    dataset_styles,
    label_for_fileset,
)

# what coffea_ad.samples.generate_fileset writes (the keys that matter here)
GENERATED = {"files": {"qcd_0000.root": "Events"},
             "metadata": {"generator": "coffea-ad", "process": "qcd", "seed": 1,
                          "settings": {"ecm": 13600.0}, "xsec": 10.0, "sumw": 100.0}}
# an older generated fileset, written before the "generator" key existed
GENERATED_OLD = {"files": {}, "metadata": {"process": "svj", "seed": 1,
                                           "settings": {"ecm": 13000.0}}}
CMS_MC = {"files": {"nano_tt_v15.root": "Events"}, "metadata": {"xsec": 833.9}}
CMS_DATA = {"files": {"Run2024.root": "Events"}, "metadata": {"is_data": True}}


def _texts(fig) -> str:
    return " | ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_origin_from_fileset_metadata() -> None:
    assert dataset_origin(GENERATED["metadata"]) == "generated"
    assert dataset_origin(GENERATED_OLD["metadata"]) == "generated"
    assert dataset_origin(CMS_MC["metadata"]) == "cms_simulation"
    assert dataset_origin(CMS_DATA["metadata"]) == "cms_data"
    assert dataset_origin({"isData": 1}) == "cms_data"
    assert dataset_origin(None) == "cms_simulation"


def test_generated_samples_never_get_a_cms_label(tmp_path) -> None:
    label = label_for_fileset({"qcd": GENERATED}, lumi_fb=50)
    assert label.origin == "generated"
    assert label.com_tev == pytest.approx(13.6)  # from the generator's ecm setting
    # a mix with CMS files is still not a CMS plot
    assert label_for_fileset({"qcd": GENERATED, "tt": CMS_MC}).origin == "generated"
    fig = plot_roc({"AE": (np.array([0.01, 0.1, 1.0]), np.array([0.2, 0.6, 1.0]), 0.8)},
                   tmp_path / "roc.png", label=label)
    text = _texts(fig)
    assert "CMS" not in text
    assert "Simulation" in text
    assert "coffea-ad detector response" in text
    assert "50 fb$^{-1}$ (13.6 TeV)" in text
    assert label_for_fileset({"svj": GENERATED_OLD}).com_tev == pytest.approx(13.0)


def test_cms_files_get_the_chosen_cms_label(tmp_path) -> None:
    mc = label_for_fileset({"tt": CMS_MC}, com_tev=13.0)
    assert mc.left_text() == "CMS Simulation Private Work"
    data = label_for_fileset({"d": CMS_DATA}, cms_text="Preliminary", lumi_fb=109.1,
                             com_tev=13.6)
    assert data.left_text() == "CMS Preliminary"
    fig = plot_roc({"AE": (np.array([0.01, 1.0]), np.array([0.3, 1.0]), 0.9)},
                   tmp_path / "roc.png", label=data)
    text = _texts(fig)
    assert "CMS" in text
    assert "Preliminary" in text
    assert "Simulation" not in text
    assert "109.1 fb$^{-1}$ (13.6 TeV)" in text
    # unnormalised: no luminosity is claimed
    assert label_for_fileset({"tt": CMS_MC}, com_tev=13.0).right_text() == "(13 TeV)"


def _events_hist() -> hist.Hist:
    h = hist.Hist(hist.axis.StrCategory(["qcd", "svj", "tt"], name="dataset"),
                  hist.axis.StrCategory(["nominal"], name="systematic"),
                  hist.axis.IntCategory([0, 1, 2], name="category", label="Tagged jets"),
                  hist.axis.Regular(4, 0, 1, name="score"),
                  hist.axis.Regular(5, 1000, 3000, name="mt", label="mT"),
                  storage=hist.storage.Weight())
    rng = np.random.default_rng(0)
    for d in ("qcd", "svj", "tt"):
        h.fill(dataset=d, systematic="nominal", category=rng.integers(0, 3, 300),
               score=rng.uniform(0, 1, 300), mt=rng.uniform(1000, 3000, 300))
    return h


def test_legends_use_fileset_labels_and_colours_stay_per_dataset(tmp_path) -> None:
    fileset = {"qcd": {"metadata": {"label": "QCD multijet"}},
               "svj": {"metadata": {"label": "SVJ, m(Z') = 3 TeV"}}, "tt": {}}
    styles = dataset_styles(["qcd", "svj", "tt"], fileset)
    assert [s.label for s in styles.values()] == ["QCD multijet", "SVJ, m(Z') = 3 TeV", "tt"]
    fig = plot_mass_by_category(_events_hist(), tmp_path / "m.png", datasets=["svj", "tt"],
                                styles=styles)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["SVJ, m(Z') = 3 TeV", "tt"]
    # svj keeps its colour (the second of the palette) although qcd is not drawn
    from matplotlib.colors import to_hex

    drawn = [to_hex(h.get_edgecolor() if hasattr(h, "get_edgecolor") else h.get_color())
             for h in legend.legend_handles]
    assert drawn[0] == PALETTE[1]
    assert drawn[1] == PALETTE[2]


def test_mass_panels_spread_the_label_and_say_unnormalised(tmp_path) -> None:
    fig = plot_mass_by_category(_events_hist(), tmp_path / "m.png")
    # experiment text above the first panel, energy above the last one
    assert any("Simulation" in t.get_text() for t in fig.axes[0].texts)
    assert any("TeV" in t.get_text() for t in fig.axes[-1].texts)
    assert not any("TeV" in t.get_text() for t in fig.axes[0].texts)
    assert "unnormalised" in fig.axes[0].get_ylabel()
    fig = plot_mass_by_category(_events_hist(), None, label=PlotLabel(lumi_fb=10.0))
    assert fig.axes[0].get_ylabel() == "Events"


def test_roc_random_line_is_drawn_on_the_log_axis_and_legend_is_outside(tmp_path) -> None:
    fig = plot_roc({"AE, leading jets": (np.array([0.0, 0.01, 1.0]), np.array([0.0, 0.5, 1.0]),
                                         0.9)}, tmp_path / "roc.png", formats=("pdf",))
    assert (tmp_path / "roc.pdf").read_bytes()[:4] == b"%PDF"
    ax = fig.axes[0]
    random_line = next(ln for ln in ax.lines if ln.get_label().startswith("Random"))
    x, y = random_line.get_data()
    lo, hi = ax.get_ylim()
    assert np.count_nonzero((y >= lo) & (y <= hi) & (y > 0)) > 100  # visible, not one point
    np.testing.assert_allclose(x, y)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "AE, leading jets, AUC = 0.900"  # no "(...) (AUC ...)" doubling
    # the legend's box starts right of the axes
    fig.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1
