"""The same-sign WW (VBS) processor against references computed here.

Small WZ (SM, leptonic) and H±± → W±W± (BSM) samples are generated once for this module, a
VAE and a VAE + DNN trained for two epochs by the real recipes. References: the selection
from the raw lepton and jet branches (uproot + awkward/numpy), m_jj by the four-vector
formula, scores from ONNX Runtime sessions opened here, luminosity weights and
σ = |BSM − SM| / √SM by hand.
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from coffea_ad.errors import MissingBranchError, ModelContractError
from coffea_ad.execution import run_processor
from coffea_ad.processors import get_processor
from coffea_ad.processors.vbs import VBSProcessor

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]

# looser than the CMS defaults so that a few hundred generated events keep some
CUTS = {"min_lep1_pt": 25.0, "min_lep2_pt": 20.0, "max_lep_eta": 2.5, "min_jet_pt": 30.0,
        "max_jet_eta": 4.7, "min_mjj": 200.0, "min_deta_jj": 1.0}
LUMI = 300.0


@pytest.fixture(scope="module")
def vbs_fileset(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from coffea_ad.samples import generate_fileset

    return generate_fileset(
        {"wz": {"process": "wz", "events": 240,
                "settings": {"w_decay": "leptonic", "z_decay": "leptonic"}},
         "hpp": {"process": "hpp", "events": 100}},
        out=tmp_path_factory.mktemp("vbs"), seed=3)


@pytest.fixture(scope="module")
def vbs_models(vbs_fileset, tmp_path_factory):
    pytest.importorskip("torch")
    from coffea_ad.training import vae, vae_dnn

    out = tmp_path_factory.mktemp("vbs_models")
    cfg = {"epochs": 2, "hidden": [16, 8], "threads": 1}
    a = vae.run(cfg, vbs_fileset, out / "vae")["onnx"]
    b = vae_dnn.run({**cfg, "classifier": [8]}, vbs_fileset, out / "vae_dnn")["onnx"]
    return a, b


def _reference(path, meta, cuts=CUTS):
    """Cutflow counts, selected mask, m_jj and luminosity weights from the raw branches."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with uproot.open(path) as f:
        a = f["Events"].arrays()
    lep_pt = ak.concatenate([a.Electron_pt, a.Muon_pt], axis=1)
    order = ak.argsort(lep_pt, axis=1, ascending=False)
    lep = {v: ak.concatenate([a[f"Electron_{v}"], a[f"Muon_{v}"]], axis=1)[order]
           for v in ("pt", "eta", "charge")}
    n_lep = ak.to_numpy(ak.num(lep["pt"]))
    n_jet = ak.to_numpy(a.nJet)

    def lead(arr, i, fill):
        return ak.to_numpy(ak.fill_none(ak.pad_none(arr, 2, axis=1)[:, i], fill)).astype(float)

    l1pt, l2pt = lead(lep["pt"], 0, 0), lead(lep["pt"], 1, 0)
    l1eta, l2eta = lead(lep["eta"], 0, 0), lead(lep["eta"], 1, 0)
    q = lead(lep["charge"], 0, 0) * lead(lep["charge"], 1, 0)
    j = {v: (lead(a[f"Jet_{v}"], 0, 0), lead(a[f"Jet_{v}"], 1, 0))
         for v in ("pt", "eta", "phi", "mass")}
    px = [j["pt"][i] * np.cos(j["phi"][i]) for i in (0, 1)]
    py = [j["pt"][i] * np.sin(j["phi"][i]) for i in (0, 1)]
    pz = [j["pt"][i] * np.sinh(j["eta"][i]) for i in (0, 1)]
    e = [np.sqrt(px[i] ** 2 + py[i] ** 2 + pz[i] ** 2 + j["mass"][i] ** 2) for i in (0, 1)]
    mjj = np.sqrt(np.maximum((e[0] + e[1]) ** 2 - (px[0] + px[1]) ** 2 - (py[0] + py[1]) ** 2
                             - (pz[0] + pz[1]) ** 2, 0))
    steps = [
        n_lep >= 2,
        (l1pt > cuts["min_lep1_pt"]) & (l2pt > cuts["min_lep2_pt"])
        & (np.abs(l1eta) < cuts["max_lep_eta"]) & (np.abs(l2eta) < cuts["max_lep_eta"]),
        q > 0,
        n_jet >= 2,
        (j["pt"][0] > cuts["min_jet_pt"]) & (j["pt"][1] > cuts["min_jet_pt"])
        & (np.abs(j["eta"][0]) < cuts["max_jet_eta"]) & (np.abs(j["eta"][1]) < cuts["max_jet_eta"]),
        (n_jet >= 2) & (mjj > cuts["min_mjj"]),
        (n_jet >= 2) & (np.abs(j["eta"][0] - j["eta"][1]) > cuts["min_deta_jj"]),
    ]
    keep = np.ones(len(n_lep), bool)
    counts = [len(keep)]
    for s in steps:
        keep &= s
        counts.append(int(keep.sum()))
    w = (ak.to_numpy(a.genWeight).astype(float) * meta["xsec"] * 1000 * LUMI / meta["sumw"])
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="eager").events()
    from coffea_ad.features import vbs_variables

    table = vbs_variables(events)
    return counts, keep, mjj, w, table


def _ort_score(model, table, keep):
    import onnxruntime as ort

    from coffea_ad.inference.contract import ModelContract, sidecar_path

    contract = ModelContract.read(sidecar_path(model))
    x = np.stack([ak.to_numpy(table[f])[keep] for f in contract.features], 1).astype(np.float32)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run([contract.score], {contract.input_names[0]: x})[0].astype(np.float64)


def test_registered():
    assert get_processor("vbs") is VBSProcessor


def test_selection_scores_and_significance(vbs_fileset, vbs_models):
    vae_path, dnn_path = vbs_models
    proc = VBSProcessor(vae_path, models={"dnn": dnn_path}, lumi_fb=LUMI, **CUTS)
    out = run_processor(vbs_fileset, proc, executor="iterative", chunksize=100)
    assert sorted(out["hists"]) == ["events", "events_dnn"]
    refs = {}
    for name, entry in vbs_fileset.items():
        path = next(iter(entry["files"]))
        counts, keep, mjj, w, table = _reference(path, entry["metadata"])
        assert list(out["cutflow"][name].values()) == counts, name
        assert keep.sum() > 0, f"{name}: the loose cuts should keep some events"
        for hname, model in (("events", vae_path), ("events_dnn", dnn_path)):
            score = _ort_score(model, table, keep)
            h = out["hists"][hname][{"dataset": name, "systematic": "nominal", "category": sum}]
            ref = hist.Hist(*h.axes, storage=hist.storage.Weight())
            ref.fill(score=score, mjj=mjj[keep], weight=w[keep])
            np.testing.assert_allclose(h.values(flow=True), ref.values(flow=True), rtol=1e-6,
                                       err_msg=f"{name} {hname}")
            refs[(name, hname)] = (score, w[keep])
    # sigma = |BSM - SM| / sqrt(SM) = S / sqrt(B) at a cut, from the histogram and by hand
    h = out["hists"]["events_dnn"][{"systematic": "nominal", "category": sum, "mjj": sum}]
    edges = h.axes["score"].edges
    for k in (0, 30, 60):
        cut = edges[k]
        s_h = h[{"dataset": "hpp"}].values()[k:].sum() + h[{"dataset": "hpp"}].values(
            flow=True)[-1]
        b_h = h[{"dataset": "wz"}].values()[k:].sum() + h[{"dataset": "wz"}].values(
            flow=True)[-1]
        s_score, s_w = refs[("hpp", "events_dnn")]
        b_score, b_w = refs[("wz", "events_dnn")]
        s, b = s_w[s_score >= cut].sum(), b_w[b_score >= cut].sum()
        assert s_h == pytest.approx(s, rel=1e-9)
        assert b_h == pytest.approx(b, rel=1e-9)
        if b > 0:
            bsm, sm = b + s, b
            assert abs(bsm - sm) / np.sqrt(sm) == pytest.approx(s_h / np.sqrt(b_h), rel=1e-9)


def test_training_rows_take_the_processor_selection(vbs_fileset):
    """``event_rows(require="vbs")`` (the rows the shipped VBS models train on) keeps exactly
    the events of the processor's default cuts, selected here from the raw branches, and with
    ``cuts=`` those of other cuts."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.features import VBS_CUTS
    from coffea_ad.nn.data import event_rows

    for name, entry in vbs_fileset.items():
        path = next(iter(entry["files"]))
        counts, keep, mjj, _, _ = _reference(path, entry["metadata"], VBS_CUTS)
        events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="eager").events()
        rows = event_rows(events, ["mjj"], require="vbs")
        np.testing.assert_array_equal(rows["event"], np.flatnonzero(keep), err_msg=name)
        np.testing.assert_allclose(rows["x"][:, 0], mjj[keep], rtol=1e-5)
        if name == "hpp":  # the signal passes the full selection often (~10 %)
            assert keep.sum() >= 3
        assert counts[-1] == keep.sum()
        # a looser training region through cuts=
        _, loose, *_ = _reference(path, entry["metadata"])
        rows = event_rows(events, ["mjj"], require="vbs", cuts=CUTS)
        np.testing.assert_array_equal(rows["event"], np.flatnonzero(loose), err_msg=name)
        assert loose.sum() > keep.sum()


def test_opposite_sign_allowed_when_asked(vbs_fileset, vbs_models):
    vae_path, _ = vbs_models
    path = next(iter(vbs_fileset["wz"]["files"]))
    counts, *_ = _reference(path, vbs_fileset["wz"]["metadata"])
    out = run_processor({"wz": vbs_fileset["wz"]},
                        VBSProcessor(vae_path, same_sign=False, **CUTS), executor="iterative")
    steps = list(out["cutflow"]["wz"].values())
    assert "same-sign leptons" not in out["cutflow"]["wz"]
    # WZ -> 3 leptons: requiring the same sign must remove events
    assert steps[2] == counts[2] > counts[3]


def test_real_files_and_refusals(cms_data, vbs_models, tiny_ae_onnx):
    vae_path, _ = vbs_models
    with pytest.raises(ModelContractError, match="event-level"):
        VBSProcessor(tiny_ae_onnx)
    out = run_processor(
        {"tt": {"files": {str(cms_data / "nano_tt_v15.root"): "Events"}},
         "empty": {"files": {str(cms_data / "nano_dy_empty.root"): "Events"}}},
        VBSProcessor(vae_path), executor="iterative")
    # NanoAOD v15 (PFMET instead of MET) runs with the default CMS-like cuts
    assert out["cutflow"]["tt"]["all"] == 200
    assert out["cutflow"]["tt"][">=2 leptons"] > 0
    assert set(out["cutflow"]["empty"].values()) == {0}
    assert "empty" in list(out["hists"]["events"].axes["dataset"])
    from coffea.nanoevents import TreeMakerSchema

    with pytest.raises(Exception, match="JetsAK8") as info:
        run_processor({"tm": {"files": {str(cms_data / "treemaker.root"): "PreSelection"}}},
                      VBSProcessor(vae_path), executor="iterative", schema=TreeMakerSchema)
    err = info.value
    while err is not None and not isinstance(err, MissingBranchError):
        err = err.__cause__ or err.__context__
    assert err is not None


def test_models_from_cli_string(vbs_models):
    """``coffea-ad run vbs --set models=dnn=PATH`` passes the extra models as one string."""
    from coffea_ad.cli import parse_settings

    vae_path, dnn_path = vbs_models
    settings = parse_settings((f"models=dnn={dnn_path}", "min_mjj=300"))
    proc = VBSProcessor(vae_path, **settings)
    assert proc.labels == ["", "dnn"]
    assert proc.scorer_for("dnn").contract.kind == "vae_classifier"
    assert proc.min_mjj == 300.0
    from coffea_ad.execution import processor_fingerprint

    # both models are recorded in the run's provenance (found among the attributes)
    assert len(processor_fingerprint(proc)["models"]) == 2
    with pytest.raises(ValueError, match="identifiers"):
        VBSProcessor(vae_path, models={"vae+dnn": dnn_path})


def test_dask_awkward_path_equals_the_runner(vbs_fileset, vbs_models):
    """apply_to_fileset on a 2-worker LocalCluster: the selection mapped over partitions, both
    models' histograms and the cutflow equal the Runner's."""
    pytest.importorskip("dask_awkward")
    vae_path, dnn_path = vbs_models
    options = dict(models={"dnn": dnn_path}, lumi_fb=LUMI, **CUTS)
    eager = run_processor(vbs_fileset, VBSProcessor(vae_path, **options), executor="iterative",
                          chunksize=100)
    lazy = run_processor(vbs_fileset, VBSProcessor(vae_path, **options), executor="dask-awkward",
                         chunksize=100, workers=2)
    assert sorted(lazy["hists"]) == sorted(eager["hists"]) == ["events", "events_dnn"]
    for name, h in eager["hists"].items():
        for ds in vbs_fileset:
            va = h[{"dataset": ds}].view(flow=True)
            vb = lazy["hists"][name][{"dataset": ds}].view(flow=True)
            np.testing.assert_allclose(vb["value"], va["value"], rtol=1e-9, atol=1e-15,
                                       err_msg=f"{name} {ds}")
            np.testing.assert_allclose(vb["variance"], va["variance"], rtol=1e-9, atol=1e-24)
    assert lazy["cutflow"] == eager["cutflow"]
    assert any(steps[list(steps)[-1]] > 0 for steps in eager["cutflow"].values())
    assert lazy["entries"] == eager["entries"]
