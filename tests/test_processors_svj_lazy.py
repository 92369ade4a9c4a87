"""The svj processor on the dask-awkward path (``apply_to_fileset`` on a real loopback
LocalCluster) gives the Runner's histograms bin for bin and the same bookkeeping."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask_awkward")
pytest.importorskip("distributed")

from coffea_ad.execution import run_processor
from coffea_ad.processors.svj import SVJProcessor

MODEL = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"


def run_both(fileset, options, *, workers):
    """The svj processor with ``options`` on the Runner and on dask-awkward."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Missing cross-reference")
        warnings.filterwarnings("ignore", message=".*plain dict fileset")
        eager = run_processor(fileset, SVJProcessor(**options), executor="iterative",
                              chunksize=150)
        lazy = run_processor(fileset, SVJProcessor(**options), executor="dask-awkward",
                             chunksize=150, workers=workers)
    return eager, lazy


@pytest.fixture(scope="module")
def both_paths(small_fileset):
    options = {"model": str(MODEL), "tag_threshold": 0.3, "max_deta": 1.5, "min_met_over_mt": 0.05,
               "min_mt": 500.0}
    return run_both(small_fileset, options, workers=2)


@pytest.mark.parametrize("name", ["events", "abcd", "jets"])
def test_lazy_histograms_equal_the_runner_bin_for_bin(both_paths, name):
    eager, lazy = both_paths
    a, b = eager["hists"][name], lazy["hists"][name]
    assert [ax.name for ax in a.axes] == [ax.name for ax in b.axes]
    for ds in ("qcd", "svj"):
        va, vb = a[{"dataset": ds}].view(flow=True), b[{"dataset": ds}].view(flow=True)
        np.testing.assert_array_equal(va["value"] > 0, vb["value"] > 0, err_msg=f"{name} {ds}")
        np.testing.assert_allclose(vb["value"], va["value"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(vb["variance"], va["variance"], rtol=1e-9, atol=1e-12)
    # not an empty comparison: the signal fills the histograms
    assert a[{"dataset": "svj"}].sum(flow=True).value > 20


def test_lazy_bookkeeping_equals_the_runner(both_paths, small_fileset):
    eager, lazy = both_paths
    assert lazy["cutflow"] == eager["cutflow"]
    steps = list(eager["cutflow"]["svj"])
    assert steps[0] == "all"
    assert len(steps) == 5  # all, 2 jets, Δη, m_T, MET/m_T
    n = {ds: entry["metadata"]["nevents"] for ds, entry in small_fileset.items()}
    assert lazy["entries"] == eager["entries"] == n
    for ds in n:
        assert lazy["sumw"][ds] == pytest.approx(eager["sumw"][ds], rel=1e-12)
    assert lazy["provider"] == eager["provider"] == {"CPUExecutionProvider": sum(n.values())}
    info = lazy["run_info"]
    assert info["complete"]
    assert info["entries_processed"] == sum(n.values())
    assert info["executor"]["name"] == "dask-awkward"


def test_lazy_constituent_model_equals_the_runner(small_fileset):
    """The graph AE (padded constituent lists, its adjacency derived per batch) on the
    dask-awkward path: the projection pass types its scores without running it (it used to
    fail there), and the histograms equal the Runner's bin for bin."""
    gae = MODEL.with_name("svj_gae.onnx")
    fileset = {"svj": small_fileset["svj"]}
    eager, lazy = run_both(fileset, {"model": str(gae), "tag_threshold": 0.6}, workers=1)
    for name in ("events", "abcd", "jets"):
        a = eager["hists"][name].view(flow=True)
        b = lazy["hists"][name].view(flow=True)
        np.testing.assert_array_equal(b["value"], a["value"], err_msg=name)
    jets = eager["hists"]["jets"]
    assert jets.sum(flow=False).value == 2 * eager["cutflow"]["svj"]["mT>=0"] > 0
    assert (jets.values() > 0).sum() > 10  # scores spread over the axis, none in the flow
    events = eager["hists"]["events"][{"dataset": "svj", "systematic": "nominal", "score": sum,
                                       "mt": sum}]
    assert (events.values() > 0).sum() >= 2  # more than one tag category filled
