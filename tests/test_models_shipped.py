"""The models shipped in models/: contract valid, loss output equal to the formula it claims,
usable on the real PFNano file."""

from __future__ import annotations

import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from coffea_ad.inference import OnnxScorer
from coffea_ad.inference.contract import ModelContract

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))


# model -> (metric path in the contract, signal, range it must lie in); the sampler has no card
METRICS = {
    "svj_dense_ae": (("auc", "svj"), (0.5, 1.0)),
    "svj_treemaker_ae": (("auc", "svj"), (0.5, 1.0)),
    "nano_fatjet_ae": (("auc", "svj"), (0.5, 1.0)),
    "lhco_cvae": (("auc_sr", "lhco_xy2"), (0.5, 1.0)),
    "lhco_cvae_sampler": (("auc_sr", "lhco_xy2"), (0.5, 1.0)),
    "lhco_jet_ae": (("auc", "lhco_xy2"), (0.5, 1.0)),
    "svj_flow": (("auc", "svj_3000_0.3"), (0.5, 1.0)),
    "vbs_vae": (("auc", "hpp"), (0.5, 1.0)),
    "vbs_vae_dnn": (("auc", "hpp"), (0.5, 1.0)),
    "svj_gae": (("auc_qcd_test_pt_reweighted", "svj_3000_0.3"), (0.6, 0.8)),
}


def test_there_are_shipped_models():
    assert [m.stem for m in MODELS] == sorted(METRICS)


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_contract_and_card(model):
    contract = ModelContract.read(model)
    assert contract.name == model.stem
    card = model.with_suffix(".md") if not model.stem.endswith("_sampler") else \
        model.with_name(model.stem.removesuffix("_sampler") + ".md")
    assert card.is_file()
    if "samples" in contract.training:  # described by content: regenerable
        for sample in contract.training["samples"].values():
            assert {"process", "seed", "nevents", "settings"} <= set(sample)
        assert contract.training["command"]
        assert contract.training["package_version"]
        assert len(contract.training["git_commit"].split()[0]) == 40
    else:  # the older models still name their files by sha256
        assert contract.training["files"], "the contract must name the training files"
        assert all(len(h) == 64 for h in contract.training["files"].values())
    (key, signal), (lo, hi) = METRICS[model.stem]
    assert lo < contract.metrics[key][signal] < hi


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_svj_dense_ae_on_real_pfnano(pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    scorer = OnnxScorer(model)
    events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                         schemaclass=PFNanoAODSchema, mode="virtual").events()
    feats = scorer.features_from_events(events)
    import awkward as ak

    x = np.stack([ak.to_numpy(ak.flatten(feats[f])) for f in scorer.contract.features], axis=1)
    out = scorer.outputs(x)
    std = scorer.contract.training["standardization"]
    scale = np.asarray(std["scale"])
    # the graph's score is the MAE between input and reconstruction on standardized features
    expected = np.mean(np.abs((x - out["reconstruction"]) / scale), axis=1)
    np.testing.assert_allclose(out["loss"], expected, rtol=1e-4, atol=1e-6)
    assert len(x) == ak.sum(ak.num(events.FatJet))
    loss = scorer.score_events(events)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(loss)), out["loss"], rtol=1e-6)


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_svj_gae_card_states_its_losses_on_real_cms_jets(pfnano_file):
    """The card's "Limits" section: on the real CMS PFNano file every jet's loss is orders
    of magnitude above the validation loss of the generated QCD it was trained like."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    model = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"
    events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                         schemaclass=PFNanoAODSchema, mode="eager").events()
    loss = np.asarray(ak.flatten(OnnxScorer(model).score_events(events)))
    assert len(loss) == ak.sum(ak.num(events.FatJet)) == 24
    card = model.with_suffix(".md").read_text()
    stated = [float(v) for v in np.round(np.quantile(loss, [0, 0.5, 1]))]
    assert "{:.0f} / {:.0f} / {:.0f} (min / median / max)".format(*stated) in card
    validation = float(re.search(r"best validation loss: ([0-9.]+)", card).group(1))
    assert 0.1 < validation < 1.0
    assert loss.min() > 1000 * validation


SVJ_FLOW = Path(__file__).resolve().parents[1] / "models" / "svj_flow.onnx"


def test_default_svj_model_has_no_phi_eta_or_raw_kinematics():
    contract = ModelContract.read(SVJ_FLOW)
    assert not {"phi", "eta", "pt", "mass", "msoftdrop"} & set(contract.features)
    # the kinematics enter only as the condition
    assert contract.training["conditions"] == ["log_pt"]
    assert contract.features[0] == "log_pt"


def test_default_svj_model_is_calibrated_on_independent_qcd():
    """The p_T/ρ decorrelation map was measured on QCD that is not the training QCD, and the
    contract says what that sample is (regenerable) and which cut is a 10 % mistag."""
    contract = ModelContract.read(SVJ_FLOW)
    cal = contract.training["calibration"]
    assert not set(cal["datasets"]) & set(contract.training["datasets"])
    train_seeds = {s["seed"] for s in contract.training["samples"].values()}
    for name in cal["datasets"]:
        sample = cal["samples"][name]
        assert {"process", "seed", "nevents", "settings"} <= set(sample)
        assert sample["process"] == "qcd"
        assert sample["seed"] not in train_seeds
    assert cal["second"]["variable"] == "rho"
    assert contract.features[cal["second"]["column"]] == "rho"
    assert contract.metrics["tag_threshold"]["0.1"] == pytest.approx(np.log(10.0), abs=1e-6)


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_default_svj_score_is_the_recorded_map_of_its_nll(pfnano_file):
    """On real CMS jets, the ONNX score equals the contract's quantile tables applied in numpy
    to the ONNX nll, log p_T and ρ (the map in the graph is the one recorded)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.nn.ddt import SurvivalTable, second_condition

    scorer = OnnxScorer(SVJ_FLOW)
    events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                         schemaclass=PFNanoAODSchema, mode="virtual").events()
    feats = scorer.features_from_events(events)
    x = np.stack([ak.to_numpy(ak.flatten(feats[f])) for f in scorer.contract.features], axis=1)
    out = scorer.outputs(x.astype(np.float32))
    cal = scorer.contract.training["calibration"]
    table = SurvivalTable.from_dict(cal["table"])
    table2 = SurvivalTable.from_dict(cal["second"]["table"])
    xd = x.astype(np.float64)
    c = xd[:, 0]
    expected = table(out["nll"].astype(np.float64), c,
                     second_condition(table2, xd[:, cal["second"]["column"]], c))
    assert len(expected) > 20
    # the recorded tables are rounded to 1e-6; float32 in the graph
    np.testing.assert_allclose(out["score"], expected, rtol=1e-3, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_regenerated_training_events_give_the_recorded_feature_table(tmp_path):
    """The card's samples are described by content: generating the first events again with
    the recorded process, settings and seed gives the feature rows recorded at training."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.nn.data import jet_rows
    from coffea_ad.samples import generate_fileset

    contract = ModelContract.read(SVJ_FLOW)
    check = contract.training["reproduce"]
    sample = contract.training["samples"][check["dataset"]]
    fs = generate_fileset({check["dataset"]: {"process": sample["process"],
                                              "events": check["events"],
                                              "settings": sample["settings"]}},
                          out=tmp_path, seed=sample["seed"])
    (path,) = fs[check["dataset"]]["files"]
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="virtual").events()
    rows = jet_rows(events, check["features"], **check["selection"])["x"]
    assert rows.shape == (len(check["rows"]), len(check["features"]))
    np.testing.assert_allclose(rows, np.array(check["rows"]), rtol=1e-5, atol=1e-6)
# ------------------------------------------------ every processor runs with its shipped model
MODEL_DIR = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def xy_file(tmp_path_factory):
    """60 events of the shipped models' signal (W' 3.5 TeV -> X Y, 2-prong): dijets at
    m_jj ~ 3.5 TeV, so the resonant signal region and the bump-hunt range are populated."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from coffea_ad.samples import generate

    fs = generate("zprime_xy", events=60, seed=5, out=tmp_path_factory.mktemp("xy"))
    return fs


def _jets(path, n=2):
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        a = f["Events"].arrays([f"FatJet_{v}" for v in ("pt", "eta", "phi", "mass", "msoftdrop",
                                                        "tau1", "tau2", "tau3")])
    return a, ak


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_default_svj_model_scores_real_pfnano(pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    scorer = OnnxScorer(SVJ_FLOW)
    events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                         schemaclass=PFNanoAODSchema, mode="virtual").events()
    scores = scorer.score_events(events)
    flat = ak.to_numpy(ak.flatten(scores))
    assert len(flat) == int(ak.sum(ak.num(events.FatJet)))
    assert np.all(np.isfinite(flat))
    assert np.all(flat > 0)


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_resonant_runs_with_its_shipped_model(xy_file):
    """The resonant processor with models/lhco_cvae.onnx (and its sampler): the SR count and
    the cVAE score of every event equal ONNX Runtime on features from the raw branches."""
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.resonant import ResonantProcessor

    proc = ResonantProcessor(MODEL_DIR / "lhco_cvae.onnx")
    assert proc.sampler is not None
    out = run_processor(xy_file, proc, executor="iterative")
    path = next(iter(xy_file["zprime_xy"]["files"]))
    a, ak = _jets(path)
    pt2 = ak.to_numpy(ak.fill_none(ak.pad_none(a.FatJet_pt, 2, axis=1)[:, 1], 0.0))
    sel = pt2 > 300.0
    j = {v: ak.to_numpy(a[f"FatJet_{v}"][sel][:, :2]).astype(np.float64)
         for v in ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3")}
    px, py, pz = (j["pt"] * np.cos(j["phi"]), j["pt"] * np.sin(j["phi"]),
                  j["pt"] * np.sinh(j["eta"]))
    e = np.sqrt(px**2 + py**2 + pz**2 + j["mass"] ** 2)
    mjj = np.sqrt(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2)
    t21 = np.where(j["tau1"] > 0, j["tau2"] / np.where(j["tau1"] > 0, j["tau1"], 1), 0)
    t32 = np.where(j["tau2"] > 0, j["tau3"] / np.where(j["tau2"] > 0, j["tau2"], 1), 0)
    x = np.stack([j["mass"][:, 0], t21[:, 0], t32[:, 0], j["mass"][:, 1], t21[:, 1],
                  t32[:, 1]], axis=1).astype(np.float32)
    in_sr = (mjj >= 3300.0) & (mjj <= 3700.0)
    assert list(out["cutflow"]["zprime_xy"].values()) == [60, sel.sum(), in_sr.sum()]
    assert in_sr.sum() >= 20  # the signal peaks in the SR
    score = _ort(MODEL_DIR / "lhco_cvae.onnx").run(
        ["score"], {"features": x, "condition": mjj.astype(np.float32)[:, None]})[0]
    np.testing.assert_allclose(np.sort(out["arrays"]["zprime_xy"]["data_score"].value),
                               np.sort(score[in_sr]), rtol=1e-5)
    # the template fills the SR with the data's weight (one draw per event)
    assert len(out["arrays"]["zprime_xy"]["cvae_x"].value) == in_sr.sum()


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_bumphunt_runs_with_its_shipped_model(xy_file):
    """The bump hunt with models/lhco_jet_ae.onnx and its QR thresholds: the histogram of
    min(jet scores) equals ONNX Runtime on the raw branches, and the categories follow the
    thresholds evaluated with correctionlib here."""
    import correctionlib
    import hist

    from coffea_ad.execution import run_processor
    from coffea_ad.processors.bumphunt import BumpHuntProcessor

    thresholds = MODEL_DIR / "lhco_jet_ae_qr.json"
    proc = BumpHuntProcessor(MODEL_DIR / "lhco_jet_ae.onnx", thresholds=thresholds)
    out = run_processor(xy_file, proc, executor="iterative")
    path = next(iter(xy_file["zprime_xy"]["files"]))
    a, ak = _jets(path)
    good = (a.FatJet_pt > 300.0) & (abs(a.FatJet_eta) < 2.5)
    jets = a[good]
    pair = ak.to_numpy(ak.num(jets.FatJet_pt) >= 2)
    jets = jets[pair]
    f = {v: ak.to_numpy(jets[f"FatJet_{v}"][:, :2]).astype(np.float64)
         for v in ("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3")}
    t21 = np.where(f["tau1"] > 0, f["tau2"] / np.where(f["tau1"] > 0, f["tau1"], 1), 0)
    t32 = np.where(f["tau2"] > 0, f["tau3"] / np.where(f["tau2"] > 0, f["tau2"], 1), 0)
    sess = _ort(MODEL_DIR / "lhco_jet_ae.onnx")
    s = [sess.run(["loss"], {"features": np.stack([f["mass"][:, i], f["msoftdrop"][:, i],
                                                   t21[:, i], t32[:, i]], 1)
                                        .astype(np.float32)})[0] for i in (0, 1)]
    score = np.minimum(s[0], s[1])
    px, py, pz = (f["pt"] * np.cos(f["phi"]), f["pt"] * np.sin(f["phi"]),
                  f["pt"] * np.sinh(f["eta"]))
    e = np.sqrt(px**2 + py**2 + pz**2 + f["mass"] ** 2)
    mjj = np.sqrt(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2)
    deta = np.abs(f["eta"][:, 0] - f["eta"][:, 1])
    search = deta <= 1.4
    cset = correctionlib.CorrectionSet.from_file(str(thresholds))
    thr = np.stack([cset["qr_threshold"].evaluate(mjj, np.full(len(mjj), k))
                    for k in range(3)], axis=1)
    cat = (score[:, None] >= thr).sum(1)
    h = out["hists"]["events"][{"dataset": "zprime_xy", "systematic": "nominal"}]
    for k in range(3 + 1):
        ref = hist.Hist(h.axes["score"])
        ref.fill(score=score[search & (cat == k)])
        got = h[{"category": hist.loc(k), "mjj": sum}].values(flow=True)
        np.testing.assert_allclose(got, ref.values(flow=True), err_msg=f"category {k}")
    assert h.sum(flow=True).value == search.sum() > 10


@pytest.fixture(scope="module")
def hpp_file(tmp_path_factory):
    """200 events of the VBS benchmark signal (H±± -> W±W± via W W fusion, leptonic W): about
    a tenth pass the vbs processor's default same-sign WW + 2 jets selection."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from coffea_ad.samples import generate

    return generate("hpp", events=200, seed=5, out=tmp_path_factory.mktemp("hpp"))


def _vbs_reference(path):
    """The vbs processor's default selection and its 13 model inputs from the raw branches
    (CMS same-sign WW cuts: leptons p_T > 25, 20 GeV, |η| < 2.5, same sign; jets p_T > 50 GeV,
    |η| < 4.7, m_jj > 500 GeV, |Δη_jj| > 2.5)."""
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        a = f["Events"].arrays()
    order = ak.argsort(ak.concatenate([a.Electron_pt, a.Muon_pt], axis=1), axis=1,
                       ascending=False)
    lep = {v: ak.concatenate([a[f"Electron_{v}"], a[f"Muon_{v}"]], axis=1)[order]
           for v in ("pt", "eta", "phi", "mass", "charge")}

    def lead(arr, i):
        return ak.to_numpy(ak.fill_none(ak.pad_none(arr, 2, axis=1)[:, i], 0)).astype(float)

    lp = {v: (lead(lep[v], 0), lead(lep[v], 1)) for v in lep}
    jp = {v: (lead(a[f"Jet_{v}"], 0), lead(a[f"Jet_{v}"], 1)) for v in ("pt", "eta", "phi", "mass")}

    def mass(o):
        px = [o["pt"][i] * np.cos(o["phi"][i]) for i in (0, 1)]
        py = [o["pt"][i] * np.sin(o["phi"][i]) for i in (0, 1)]
        pz = [o["pt"][i] * np.sinh(o["eta"][i]) for i in (0, 1)]
        e = [np.sqrt(px[i] ** 2 + py[i] ** 2 + pz[i] ** 2 + np.maximum(o["mass"][i], 0) ** 2)
             for i in (0, 1)]
        return np.sqrt(np.maximum((e[0] + e[1]) ** 2 - (px[0] + px[1]) ** 2
                                  - (py[0] + py[1]) ** 2 - (pz[0] + pz[1]) ** 2, 0))

    n_lep, n_jet = ak.to_numpy(ak.num(lep["pt"])), ak.to_numpy(a.nJet)
    mjj, deta = mass(jp), np.abs(jp["eta"][0] - jp["eta"][1])
    keep = ((n_lep >= 2) & (lp["pt"][0] > 25) & (lp["pt"][1] > 20)
            & (np.abs(lp["eta"][0]) < 2.5) & (np.abs(lp["eta"][1]) < 2.5)
            & (lp["charge"][0] * lp["charge"][1] > 0) & (n_jet >= 2)
            & (jp["pt"][0] > 50) & (jp["pt"][1] > 50)
            & (np.abs(jp["eta"][0]) < 4.7) & (np.abs(jp["eta"][1]) < 4.7)
            & (mjj > 500) & (deta > 2.5))
    centre = 0.5 * (jp["eta"][0] + jp["eta"][1])
    dphi = np.abs((jp["phi"][0] - jp["phi"][1] + np.pi) % (2 * np.pi) - np.pi)
    feats = {"lep1_pt": lp["pt"][0], "lep1_eta": lp["eta"][0], "lep2_pt": lp["pt"][1],
             "lep2_eta": lp["eta"][1], "zep1": np.abs(lp["eta"][0] - centre) / deta,
             "zep2": np.abs(lp["eta"][1] - centre) / deta, "mjj": mjj, "deta_jj": deta,
             "dphi_jj": dphi, "mll": mass(lp), "met": ak.to_numpy(a.MET_pt).astype(float),
             "jet1_pt": jp["pt"][0], "jet2_pt": jp["pt"][1]}
    weight = ak.to_numpy(a.genWeight).astype(float)
    return keep, {k: v[keep] for k, v in feats.items()}, weight[keep]


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_vbs_runs_with_its_shipped_models(hpp_file):
    """The vbs processor with models/vbs_vae_dnn.onnx (and vbs_vae.onnx as a second model):
    the cutflow's last count is the selection made from the raw branches here, and both score
    histograms equal ONNX Runtime on inputs computed here from the raw branches."""
    import hist

    from coffea_ad.execution import run_processor
    from coffea_ad.processors.vbs import VBSProcessor

    proc = VBSProcessor(MODEL_DIR / "vbs_vae_dnn.onnx", models={"vae": MODEL_DIR / "vbs_vae.onnx"})
    out = run_processor(hpp_file, proc, executor="iterative", chunksize=70)
    path = next(iter(hpp_file["hpp"]["files"]))
    keep, feats, weight = _vbs_reference(path)
    assert list(out["cutflow"]["hpp"].values())[-1] == keep.sum() >= 5
    for hname, model in (("events", "vbs_vae_dnn"), ("events_vae", "vbs_vae")):
        contract = ModelContract.read(MODEL_DIR / f"{model}.json")
        x = np.stack([feats[f] for f in contract.features], axis=1).astype(np.float32)
        score = _ort(MODEL_DIR / f"{model}.onnx").run([contract.score], {"features": x})[0]
        h = out["hists"][hname][{"dataset": "hpp", "systematic": "nominal", "category": sum,
                                 "mjj": sum}]
        ref = hist.Hist(h.axes["score"], storage=hist.storage.Weight())
        # without lumi_fb the processor fills generator weights (H±± events are weighted)
        ref.fill(score=score.ravel().astype(np.float64), weight=weight)
        np.testing.assert_allclose(h.values(flow=True), ref.values(flow=True), rtol=1e-6,
                                   err_msg=hname)
        assert np.count_nonzero(ref.values()) >= 2  # scores spread over several bins
