"""The resonant (LHC-Olympics-style cVAE) processor against references computed here.

A tiny cVAE and its sampler are trained and exported by the real recipe
(``training/cvae.py``, two epochs) on the session's generated QCD + SVJ samples, with the
signal region moved to where those samples have events. References: dijet selection, m_jj
and τ ratios from the raw branches (uproot + numpy), the cVAE score and the template from
ONNX Runtime sessions opened here.
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from coffea_ad.errors import MissingBranchError
from coffea_ad.execution import run_processor
from coffea_ad.inference.noise import event_normals
from coffea_ad.processors import get_processor
from coffea_ad.processors.resonant import REGIONS, ResonantProcessor

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]

SR = (1300.0, 1700.0)
MIN_PT = 200.0


@pytest.fixture(scope="module")
def cvae_model(small_fileset, tmp_path_factory):
    pytest.importorskip("torch")
    from coffea_ad.training import cvae

    out = tmp_path_factory.mktemp("cvae") / "cvae"
    res = cvae.run({"epochs": 2, "sr_low": SR[0], "sr_high": SR[1], "min_pt": MIN_PT,
                    "hidden": [16, 16], "threads": 1}, small_fileset, out)
    return res["onnx"], res["sampler"]


def _reference(path):
    """Selected mask, the 6 features (mass, tau21, tau32 of j1 then j2), m_jj, weights."""
    with uproot.open(path) as f:
        a = f["Events"].arrays([f"FatJet_{v}" for v in ("pt", "eta", "phi", "mass", "tau1",
                                                        "tau2", "tau3")]
                               + ["genWeight", "run", "luminosityBlock", "event"])
    pt2 = ak.to_numpy(ak.fill_none(ak.pad_none(a.FatJet_pt, 2, axis=1)[:, 1], 0.0))
    sel = pt2 > MIN_PT
    j = {v: ak.to_numpy(a[f"FatJet_{v}"][sel][:, :2]).astype(np.float64)
         for v in ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3")}
    px, py = j["pt"] * np.cos(j["phi"]), j["pt"] * np.sin(j["phi"])
    pz = j["pt"] * np.sinh(j["eta"])
    e = np.sqrt(px**2 + py**2 + pz**2 + j["mass"] ** 2)
    mjj = np.sqrt(np.maximum(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2
                             - pz.sum(1) ** 2, 0))
    tau21 = np.where(j["tau1"] > 0, j["tau2"] / np.where(j["tau1"] > 0, j["tau1"], 1), 0)
    tau32 = np.where(j["tau2"] > 0, j["tau3"] / np.where(j["tau2"] > 0, j["tau2"], 1), 0)
    x = np.stack([j["mass"][:, 0], tau21[:, 0], tau32[:, 0],
                  j["mass"][:, 1], tau21[:, 1], tau32[:, 1]], axis=1)
    w = ak.to_numpy(a.genWeight[sel]).astype(np.float64)
    ids = [ak.to_numpy(a[n][sel]) for n in ("run", "luminosityBlock", "event")]
    return sel, x, mjj, w, ids


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_registered():
    assert get_processor("resonant") is ResonantProcessor


def test_regions_scores_features_and_template(small_fileset, cvae_model):
    model, sampler = cvae_model
    proc = ResonantProcessor(model, signal_region=SR, min_pt=MIN_PT, seed=7,
                             samples_per_event=2)
    assert proc.sampler is not None, "the sampler next to the model is found by default"
    assert proc.features == ["mass_j1", "tau21_j1", "tau32_j1", "mass_j2", "tau21_j2",
                             "tau32_j2"]
    # several chunks per file: the template noise is a function of the event, not the chunk
    out = run_processor(small_fileset, proc, executor="iterative", chunksize=130)
    for name, entry in small_fileset.items():
        path = next(iter(entry["files"]))
        sel, x, mjj, w, ids = _reference(path)
        region = np.where(mjj < SR[0], 0, np.where(mjj <= SR[1], 1, 2))
        steps = list(out["cutflow"][name].values())
        assert steps == [len(sel), sel.sum(), (region == 1).sum()]
        score = _ort(model).run(["score"], {"features": x.astype(np.float32),
                                            "condition": mjj.astype(np.float32)[:, None]})[0]
        h = out["hists"]["events"][{"dataset": name, "systematic": "nominal"}]
        for r in REGIONS:
            ref = hist.Hist(h.axes["score"], storage=hist.storage.Weight())
            ref.fill(score=score[region == r], weight=w[region == r])
            got = h[{"category": hist.loc(r), "mjj": sum}]
            np.testing.assert_allclose(got.values(flow=True), ref.values(flow=True),
                                       rtol=1e-9, err_msg=f"{name} region {r}")
        # data features per region, e.g. tau21 of the second jet
        hf = out["hists"]["feature_tau21_j2"][{"dataset": name, "source": "data"}]
        for r in REGIONS:
            ref = hist.Hist(hf.axes["value"], storage=hist.storage.Weight())
            ref.fill(value=x[region == r, 4], weight=w[region == r])
            np.testing.assert_allclose(hf[{"region": hist.loc(r)}].values(flow=True),
                                       ref.values(flow=True), rtol=1e-9)
        # the template: the decoder run here on the same noise, 2 draws per event
        noise = event_normals(7, *ids, width=proc.noise_width, copies=2)
        cond = np.repeat(mjj.astype(np.float32), 2)[:, None]
        sampled = _ort(sampler).run(["features"], {"noise": noise, "condition": cond})[0]
        sr2 = np.repeat(region, 2) == 1
        arrays = out["arrays"][name]
        np.testing.assert_allclose(arrays["cvae_x"].value, sampled[sr2], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(arrays["cvae_weight"].value, np.repeat(w, 2)[sr2] / 2)
        np.testing.assert_allclose(arrays["data_x"].value, x[region == 1], rtol=1e-6)
        np.testing.assert_allclose(arrays["data_mjj"].value, mjj[region == 1], rtol=1e-9)
        # the template carries the data's total weight in every region
        hc = out["hists"]["feature_mass_j1"][{"dataset": name, "source": "cvae", "value": sum}]
        for r in REGIONS:
            assert hc[{"region": hist.loc(r)}].value == pytest.approx(w[region == r].sum())


def test_without_sampler_no_template(small_fileset, cvae_model, tmp_path):
    import shutil

    model, _ = cvae_model
    alone = tmp_path / "cvae.onnx"
    shutil.copy(model, alone)
    shutil.copy(model.replace(".onnx", ".json"), tmp_path / "cvae.json")
    proc = ResonantProcessor(alone, signal_region=SR, min_pt=MIN_PT)
    assert proc.sampler is None
    out = run_processor({"qcd": small_fileset["qcd"]}, proc, executor="iterative")
    h = out["hists"]["feature_mass_j1"][{"dataset": "qcd"}]
    assert h[{"source": "cvae"}].sum(flow=True).value == 0
    assert h[{"source": "data"}].sum(flow=True).value > 0
    assert out["arrays"]["qcd"]["cvae_x"].value.shape == (0, 6)


def test_real_files(cms_data, cvae_model):
    """pfnano.root runs (τ branches present); the empty NanoAOD gives empty, well-formed
    output; a jet-level model is refused."""
    model, _ = cvae_model
    proc = ResonantProcessor(model, min_pt=MIN_PT)
    out = run_processor({"pfnano": {"files": {str(cms_data / "pfnano.root"): "Events"},
                         "metadata": {}},
                         "empty": {"files": {str(cms_data / "nano_dy_empty.root"): "Events"}}},
                        proc, executor="iterative")
    sel, _, mjj, w, _ = _reference(cms_data / "pfnano.root")
    assert sel.sum() > 0
    h = out["hists"]["events"][{"dataset": "pfnano", "systematic": "nominal", "score": sum}]
    ref = hist.Hist(h.axes["mjj"], storage=hist.storage.Weight())
    ref.fill(mjj=mjj, weight=w)
    np.testing.assert_allclose(h[{"category": sum}].values(flow=True), ref.values(flow=True),
                               rtol=1e-6)
    assert list(out["cutflow"]["empty"].values()) == [0, 0, 0]
    assert out["arrays"]["empty"]["data_x"].value.shape == (0, 6)
    assert out["hists"]["events"][{"dataset": "empty"}].sum(flow=True).value == 0


def test_refusals(cms_data, cvae_model, tiny_ae_onnx):
    from coffea.nanoevents import TreeMakerSchema

    from coffea_ad.errors import ModelContractError

    with pytest.raises(ModelContractError, match=r"features.*condition"):
        ResonantProcessor(tiny_ae_onnx)
    model, _ = cvae_model
    with pytest.raises(Exception, match="JetsAK8") as info:
        run_processor({"tm": {"files": {str(cms_data / "treemaker.root"): "PreSelection"}}},
                      ResonantProcessor(model), executor="iterative", schema=TreeMakerSchema)
    err = info.value
    while err is not None and not isinstance(err, MissingBranchError):
        err = err.__cause__ or err.__context__
    assert err is not None, f"expected a MissingBranchError, got {info.value!r}"
    assert "JetsAK8" in str(err)


def test_same_output_on_every_executor(small_fileset, cvae_model):
    """iterative (two chunkings), futures and dask-awkward (apply_to_fileset on a 2-worker
    LocalCluster) give the same histograms bin for bin, template included, and the same
    cutflow; the chunked executors the same signal-region arrays."""
    pytest.importorskip("dask_awkward")
    model, _ = cvae_model
    opts = {"signal_region": SR, "min_pt": MIN_PT, "seed": 3, "samples_per_event": 2}
    runs = {
        "iterative": run_processor(small_fileset, ResonantProcessor(model, **opts),
                                   executor="iterative", chunksize=10_000),
        "iterative-small-chunks": run_processor(small_fileset, ResonantProcessor(model, **opts),
                                                executor="iterative", chunksize=70),
        "futures": run_processor(small_fileset, ResonantProcessor(model, **opts),
                                 executor="futures", chunksize=110, workers=2),
        "dask-awkward": run_processor(small_fileset, ResonantProcessor(model, **opts),
                                      executor="dask-awkward", chunksize=150, workers=2),
    }
    ref = runs["iterative"]
    template_sum = ref["hists"]["feature_mass_j1"][{"source": "cvae"}].sum(flow=True).value
    assert template_sum > 0  # the template is really compared
    for label, out in runs.items():
        assert out["cutflow"] == ref["cutflow"], label
        for name, h in ref["hists"].items():
            for ds in small_fileset:
                va = h[{"dataset": ds}].view(flow=True)
                vb = out["hists"][name][{"dataset": ds}].view(flow=True)
                np.testing.assert_allclose(vb["value"], va["value"], rtol=1e-6, atol=1e-9,
                                           err_msg=f"{label} {name} {ds}")
        if label != "dask-awkward":
            for ds in small_fileset:
                for key in ("data_x", "cvae_x", "cvae_weight"):
                    a = ref["arrays"][ds][key].value
                    b = out["arrays"][ds][key].value
                    # chunks may come back in another order: compare as sorted rows
                    np.testing.assert_allclose(np.sort(b, axis=0), np.sort(a, axis=0),
                                               rtol=1e-6, err_msg=f"{label} {key} {ds}")
