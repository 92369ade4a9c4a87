"""The svj ``abcd`` histogram: coarse by default (output ≤ 1 MB per dataset and systematic for
all default histograms), the fine one on request, and the coarse one equal to sums of the
fine one on a real CMS file."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_ad.execution import run_processor
from coffea_ad.processors.svj import ABCD_VARIABLES, SVJProcessor, abcd_histogram

pytestmark = [
    # the real v15 file has no jet->candidate cross-reference index (coffea warns; the
    # processor builds the links itself), generated files redefine a branch
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]


def _per_dataset_systematic_bytes(hists):
    return sum(h[{"dataset": 0, **({"systematic": 0} if "systematic" in h.axes.name else {})}]
               .view(flow=True).nbytes for h in hists.values())


def _coarse_from_fine(fine, coarse):
    """Sum the fine bins (flow included) into the coarse ones: every coarse edge is a fine edge,
    so each fine bin lies in exactly one coarse bin."""
    out = fine.values(flow=True)
    var = fine.variances(flow=True)
    for axis, (f_ax, c_ax) in enumerate(zip(fine.axes, coarse.axes, strict=True)):
        f_edges, c_edges = np.asarray(f_ax.edges), np.asarray(c_ax.edges)
        assert np.isin(c_edges, f_edges).all(), f_ax.name
        # fine bin k (flow-indexed: 0 underflow ... n+1 overflow) -> coarse flow index
        centres = np.concatenate([[-np.inf], (f_edges[:-1] + f_edges[1:]) / 2, [np.inf]])
        target = np.searchsorted(c_edges, centres, side="right")
        n_c = len(c_edges) + 1
        out = np.stack([np.take(out, np.flatnonzero(target == j), axis=axis).sum(axis=axis)
                        for j in range(n_c)], axis=axis)
        var = np.stack([np.take(var, np.flatnonzero(target == j), axis=axis).sum(axis=axis)
                        for j in range(n_c)], axis=axis)
    return out, var


@pytest.mark.parametrize("variable", ["deta_jj", "met_over_mt"])
def test_coarse_abcd_equals_sums_of_the_fine_one_on_real_nanoaod(cms_data, tiny_ae_onnx,
                                                                  variable):
    fileset = {"tt": {"files": {str(cms_data / "nano_tt_v15.root"): "Events"}}}
    runs = {}
    for binning in ("coarse", "fine"):
        proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, min_pt=170.0,
                            abcd_variable=variable, abcd_binning=binning)
        runs[binning] = run_processor(fileset, proc, executor="iterative")["hists"]
    sel = {"dataset": "tt", "systematic": "nominal"}
    fine, coarse = runs["fine"]["abcd"][sel], runs["coarse"]["abcd"][sel]
    assert fine.sum(flow=True).value > 0
    assert coarse.axes.name == fine.axes.name == ("score", variable, "mt")
    # the score axis is the events histogram's; the second variable keeps the CMS cut values
    np.testing.assert_array_equal(coarse.axes["score"].edges, fine.axes["score"].edges)
    for cut in {"deta_jj": (1.1, 1.3, 1.5, 2.0), "met_over_mt": (0.15, 0.2, 0.25)}[variable]:
        assert cut in coarse.axes[variable].edges
    values, variances = _coarse_from_fine(fine, coarse)
    np.testing.assert_allclose(coarse.values(flow=True), values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coarse.variances(flow=True), variances, rtol=1e-12, atol=1e-12)
    # ABCD region yields at a score edge and |Δη| < 1.5 / R_T > 0.15: the same from both
    y_cut = 1.5 if variable == "deta_jj" else 0.15
    x_edges = np.asarray(fine.axes["score"].edges)
    x_cut = float(x_edges[60])
    for h in (fine, coarse):
        ys = np.asarray(h.axes[variable].edges)
        xs = np.asarray(h.axes["score"].edges)
        v = h[{"mt": sum}].values(flow=True)
        xi = int(np.searchsorted(xs, x_cut)) + 1  # flow index of the first bin above the cut
        yi = int(np.searchsorted(ys, y_cut)) + 1
        regions = (v[xi:, :yi].sum(), v[xi:, yi:].sum(), v[:xi, :yi].sum(), v[:xi, yi:].sum())
        if h is fine:
            want = regions
        else:
            np.testing.assert_allclose(regions, want, rtol=1e-12)
    # the m_T marginal: coarse bins of 200 GeV are pairs of the events histogram's bins
    events = runs["coarse"]["events"][sel][{"category": sum, "score": sum}]
    np.testing.assert_allclose(coarse[{"score": sum, variable: sum}].values(),
                               events.values().reshape(-1, 2).sum(axis=1), rtol=1e-12)


def test_default_output_is_below_1_mb_per_dataset_and_systematic(small_fileset, tiny_ae_onnx):
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3)
    hists = run_processor(small_fileset, proc, executor="iterative")["hists"]
    assert set(hists) == {"events", "abcd", "jets"}
    per = _per_dataset_systematic_bytes(hists)
    # bins of 16 B (Weight storage), flow included: events (3 categories + overflow) x 122
    # scores x 62 m_T, abcd 122 x 7 x 32, jets 402
    assert per == 16 * (4 * 122 * 62 + 122 * 7 * 32 + 402)
    assert per <= 1_000_000
    fine = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, abcd_binning="fine")
    assert abcd_histogram("deta_jj", binning="fine").axes["deta_jj"].edges[-1] == pytest.approx(
        ABCD_VARIABLES["deta_jj"][1][-1])
    assert fine.abcd_binning == "fine"


def test_unknown_abcd_binning(tiny_ae_onnx):
    with pytest.raises(ValueError, match="abcd_binning must be 'coarse' or 'fine', found 'fin'"):
        SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, abcd_binning="fin")
