"""Real CMS inputs as users have them: PUPPI constituents, RNTuple files.

Every test reads the real files in ``../shared/data/cms/`` and asserts values against an
independent reference (the CMSSW-computed jet branches, or the same events in another format).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.features import jet_constituents


def load_events(path: Path, tree: str = "Events"):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        # coffea warns about cross-references these small test files do not carry
        warnings.simplefilter("ignore", RuntimeWarning)
        return NanoEventsFactory.from_root(
            {str(path): tree}, schemaclass=PFNanoAODSchema, mode="virtual"
        ).events()


def four_vector_sum(pt, eta, phi, mass) -> tuple[float, float]:
    """(p_T, m) of the sum of massive four-vectors, in float64 numpy."""
    pt, eta, phi, mass = (np.asarray(x, dtype=np.float64) for x in (pt, eta, phi, mass))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    sx, sy, sz, se = px.sum(), py.sum(), pz.sum(), e.sum()
    return float(np.hypot(sx, sy)), float(np.sqrt(max(se**2 - sx**2 - sy**2 - sz**2, 0.0)))


# ----------------------------------------------------------------------------------- PUPPI
def test_puppi_weighted_constituents_reproduce_the_fatjet(pfnano_file):
    """CMS AK8 jets are PUPPI jets: the weighted constituent sum is the raw (pre-JEC) FatJet."""
    events = load_events(pfnano_file)
    jets = events.FatJet
    raw = 1.0 - ak.to_numpy(ak.flatten(jets.rawFactor)).astype(np.float64)
    want_pt = ak.to_numpy(ak.flatten(jets.pt)) * raw
    want_m = ak.to_numpy(ak.flatten(jets.mass)) * raw

    sums = {}
    for puppi in (True, False):
        cons = ak.flatten(jet_constituents(events, puppi=puppi), axis=1)
        sums[puppi] = np.array([four_vector_sum(c.pt, c.eta, c.phi, c.mass) for c in cons])
    assert len(want_pt) == len(sums[True]) == 24
    # weighted: within 1 % for every jet (measured: 0.3 % at worst in p_T, 0.3 % in mass)
    np.testing.assert_allclose(sums[True][:, 0], want_pt, rtol=0.01)
    np.testing.assert_allclose(sums[True][:, 1], want_m, rtol=0.01)
    # unweighted: the pile-up candidates PUPPI removes make jets heavier, by far more than 1 %
    excess = sums[False][:, 1] / want_m - 1.0
    assert excess.max() > 0.10
    assert np.median(excess) > 0.02


def test_puppi_weight_is_applied_per_candidate(pfnano_file):
    """pt and mass are the candidate's branches times its puppiWeight; η, φ untouched."""
    events = load_events(pfnano_file)
    tree = uproot.open(pfnano_file)["Events"]
    arr = tree.arrays(["FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx", "PFCands_pt",
                       "PFCands_mass", "PFCands_eta", "PFCands_puppiWeight"], library="np")
    cons = jet_constituents(events)
    # first event, first jet: link rows in order
    rows = arr["FatJetPFCands_jetIdx"][0] == 0
    idx = arr["FatJetPFCands_pFCandsIdx"][0][rows]
    w = arr["PFCands_puppiWeight"][0][idx]
    assert (w < 1).any()  # the check means something only if some weight differs from 1
    np.testing.assert_array_equal(ak.to_numpy(cons[0, 0].pt), arr["PFCands_pt"][0][idx] * w)
    np.testing.assert_array_equal(ak.to_numpy(cons[0, 0].mass), arr["PFCands_mass"][0][idx] * w)
    np.testing.assert_array_equal(ak.to_numpy(cons[0, 0].eta), arr["PFCands_eta"][0][idx])
    np.testing.assert_array_equal(ak.to_numpy(cons[0, 0].puppiWeight), w)


# --------------------------------------------------------------------------------- RNTuple
@pytest.fixture(scope="module")
def rntuple_file(cms_data) -> Path:
    path = cms_data / "pfnano_rntuple.root"
    with uproot.open(path) as f:  # the test means something only if it is an RNTuple
        assert f.classname_of("Events") == "ROOT::RNTuple"
    return path


def test_rntuple_features_equal_the_ttree(rntuple_file, pfnano_file):
    from coffea_ad.features import JET_FEATURES, jet_table

    names = [n for n in JET_FEATURES if n not in ("tau21", "tau32")] + ["tau21", "tau32"]
    got = jet_table(load_events(rntuple_file), names)
    want = jet_table(load_events(pfnano_file), names)
    assert len(want) == 24
    for field in want.fields:
        np.testing.assert_array_equal(ak.to_numpy(got[field]), ak.to_numpy(want[field]), field)


def test_rntuple_scores_equal_the_ttree(rntuple_file, pfnano_file, tmp_path):
    """The friend writer on the RNTuple writes the same rows and scores as on the TTree."""
    from coffea_ad.inference.friend import write_score_friend

    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    outs = {}
    for label, path in (("rntuple", rntuple_file), ("ttree", pfnano_file)):
        summary = write_score_friend(path, model, tmp_path / f"{label}.root")
        assert summary.entries == 10
        assert summary.rows == 24
        with uproot.open(tmp_path / f"{label}.root") as f:
            outs[label] = f["Events"].arrays()
    for field in ("run", "luminosityBlock", "event", "nFatJet"):
        np.testing.assert_array_equal(outs["rntuple"][field], outs["ttree"][field])
    got = ak.to_numpy(ak.flatten(outs["rntuple"]["FatJet_svj_dense_ae"]))
    want = ak.to_numpy(ak.flatten(outs["ttree"]["FatJet_svj_dense_ae"]))
    assert np.all(want > 0)
    np.testing.assert_array_equal(got, want)


def test_rntuple_run_gives_the_ttree_histograms(rntuple_file, pfnano_file):
    """coffea's Runner through run_processor: the svj processor on the RNTuple fills the same
    histograms, bin for bin, as on the TTree."""
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    outs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # schema cross-references
        for label, path in (("rntuple", rntuple_file), ("ttree", pfnano_file)):
            proc = SVJProcessor(model, tag_threshold=0.3, min_pt=170.0)
            outs[label] = run_processor({"d": {"files": {str(path): "Events"}}}, proc,
                                        executor="iterative")
    assert outs["rntuple"]["cutflow"] == outs["ttree"]["cutflow"]
    for name, want in outs["ttree"]["hists"].items():
        got = outs["rntuple"]["hists"][name]
        assert want.sum(flow=True).value > 0
        np.testing.assert_array_equal(got.values(flow=True), want.values(flow=True), name)


# --------------------------------------------------------------- workers without shared disk
def _score_on_worker(scorer, features):
    return os.getpid(), scorer(features)


def test_workers_without_the_model_file_score_from_the_carried_bytes(pfnano_file, tmp_path):
    """The scorer is built, then its model file and sidecar are deleted, as on a cluster whose
    workers do not see the submitter's disk: worker processes still score, with the same values."""
    distributed = pytest.importorskip("distributed")
    from coffea_ad.features import jet_features
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.inference.contract import sidecar_path

    shipped = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    model = tmp_path / "private" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(shipped.read_bytes())
    sidecar_path(model).write_bytes(sidecar_path(shipped).read_bytes())
    scorer = OnnxScorer(model)
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    proc = SVJProcessor(model, tag_threshold=0.3, min_pt=170.0)
    events = load_events(pfnano_file)
    feats = ak.flatten(jet_features(events, scorer.contract.features), axis=1)
    x = np.stack([ak.to_numpy(feats[f]) for f in scorer.contract.features], axis=1)
    want = OnnxScorer(shipped)(x)
    model.unlink()
    sidecar_path(model).unlink()
    model.parent.rmdir()
    assert not model.parent.exists()

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pid, got = client.submit(_score_on_worker, scorer, x).result()
        fileset = {"pf": {"files": {str(pfnano_file): "Events"}}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # schema cross-references
            remote = run_processor(fileset, proc, executor="dask", client=client,
                                   progress=False)
            local = run_processor(fileset, SVJProcessor(shipped, tag_threshold=0.3,
                                                        min_pt=170.0), executor="iterative")
    assert pid != os.getpid()
    h = local["hists"]["events"]
    assert h.sum(flow=True).value == 10
    np.testing.assert_array_equal(remote["hists"]["events"].values(flow=True),
                                  h.values(flow=True))
    # provenance names the digest of the bytes that ran, although the file is gone
    assert set(remote["run_info"]["models"].values()) == {scorer.model_sha256}
    assert len(got) == 24
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ coffea ml_tools wrapper
def test_onnx_wrapper_is_a_coffea_wrapper_and_scores_like_the_scorer(pfnano_file, tmp_path):
    """Written as coffea's docs write a torch_wrapper subclass: prepare_awkward turns events
    into the numpy-convertible model input; called on awkward, dask-awkward and numpy."""
    import pickle

    from coffea.ml_tools import numpy_call_wrapper

    from coffea_ad.errors import ModelContractError
    from coffea_ad.features import jet_features
    from coffea_ad.inference import OnnxScorer, onnx_wrapper

    shipped = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    names = OnnxScorer(shipped).contract.features

    class JetAE(onnx_wrapper):
        def prepare_awkward(self, events):
            lib = self.get_awkward_lib(events)
            feats = lib.flatten(jet_features(events, names), axis=1)
            return (lib.concatenate([feats[n][:, np.newaxis] for n in names], axis=1),), {}

    wrapper = JetAE(shipped)
    assert isinstance(wrapper, numpy_call_wrapper)
    events = load_events(pfnano_file)
    want = ak.to_numpy(ak.flatten(OnnxScorer(shipped).score_events(events)))
    assert len(want) == 24
    np.testing.assert_array_equal(ak.to_numpy(wrapper(events)), want)

    # dask-awkward: coffea's own _call_dask path, the wrapper pickled into the graph
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lazy = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                           schemaclass=PFNanoAODSchema, mode="dask").events()
        got = wrapper(lazy).compute(scheduler="sync")
    np.testing.assert_array_equal(ak.to_numpy(got), want)

    # numpy: the contract is checked before the model runs
    x = np.stack([ak.to_numpy(ak.flatten(jet_features(events, names)[n])) for n in names], 1)
    np.testing.assert_array_equal(wrapper(x), want)
    with pytest.raises(ModelContractError, match="expects rows of shape"):
        wrapper(x[:, :3])
    # the default prepare_awkward: one record array of the contract's features
    flat = ak.flatten(jet_features(events, names), axis=1)
    np.testing.assert_array_equal(ak.to_numpy(onnx_wrapper(shipped)(flat)), want)

    # pickled without a session, usable where the model file is gone
    wrapper.scorer.session  # noqa: B018 -- a session exists here and must not travel
    copy = tmp_path / "m.onnx"
    copy.write_bytes(shipped.read_bytes())
    (tmp_path / "m.json").write_bytes(shipped.with_suffix(".json").read_bytes())
    moved = onnx_wrapper(copy)
    blob = pickle.dumps(moved)
    copy.unlink()
    clone = pickle.loads(blob)
    assert clone.scorer._session is None
    np.testing.assert_array_equal(clone(x), want)


# ------------------------------------------------------------------ working points as JSON
def test_working_points_round_trip_through_correctionlib(tmp_path):
    import pickle

    import correctionlib

    from coffea_ad.errors import UnknownNameError
    from coffea_ad.inference import read_working_point, working_point_path, write_working_point

    model = tmp_path / "ae.onnx"
    path = write_working_point(model, 0.42, description="QCD eff 1%")
    assert path == working_point_path(model) == tmp_path / "ae_wp.json"
    write_working_point(model, [0.3, 0.5], pt_edges=[200.0, 400.0, 800.0], name="binned")
    pt = np.array([100.0, 250.0, 399.9, 400.0, 600.0, 5000.0])
    # read back with correctionlib itself, independently of read_working_point
    cset = correctionlib.CorrectionSet.from_file(str(path))
    assert cset["tag"].evaluate(600.0) == 0.42  # the first one was kept when adding
    np.testing.assert_array_equal(cset["binned"].evaluate(pt), [0.3, 0.3, 0.3, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(read_working_point(model).threshold(pt), np.full(6, 0.42))
    binned = pickle.loads(pickle.dumps(read_working_point(path, name="binned")))
    np.testing.assert_array_equal(binned.threshold(pt.reshape(2, 3)),
                                  [[0.3, 0.3, 0.3], [0.5, 0.5, 0.5]])
    with pytest.raises(UnknownNameError, match=r"'tight'.*binned, tag"):
        read_working_point(path, name="tight")
    with pytest.raises(ValueError, match="increasing pt_edges of length"):
        write_working_point(model, [0.3, 0.5], pt_edges=[200.0, 400.0], name="bad")
    with pytest.raises(FileNotFoundError, match=r"other_wp\.json does not exist"):
        read_working_point(tmp_path / "other.onnx")


# ------------------------------------------------- branch models: NanoAOD, TreeMaker, scouting
def _ratio(num, den):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _branch_inputs(path: Path, tree: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-jet model inputs from the raw branches by hand, jets per event)."""
    with uproot.open(path) as f:
        t = f[tree]
        if kind == "treemaker":
            a = t.arrays(filter_name=["JetsAK8*"])
            pt = ak.flatten(a["JetsAK8.fCoordinates.fPt"])
            eta = ak.flatten(a["JetsAK8.fCoordinates.fEta"])
            e = np.asarray(ak.flatten(a["JetsAK8.fCoordinates.fE"]), np.float64)
            p = np.asarray(pt, np.float64) * np.cosh(np.asarray(eta, np.float64))
            mass = np.sqrt(np.maximum(e**2 - p**2, 0.0))
            b = {k: np.asarray(ak.flatten(a[f"JetsAK8_{k}"]), np.float64) for k in (
                "softDropMass", "ptD", "axismajor", "axisminor", "girth",
                "NsubjettinessTau1", "NsubjettinessTau2", "NsubjettinessTau3")}
            x = np.stack([mass, b["softDropMass"], b["ptD"], b["axismajor"], b["axisminor"],
                          b["girth"], _ratio(b["NsubjettinessTau2"], b["NsubjettinessTau1"]),
                          _ratio(b["NsubjettinessTau3"], b["NsubjettinessTau2"])], axis=1)
            return x, ak.to_numpy(ak.num(a["JetsAK8.fCoordinates.fPt"]))
        jets = "ScoutingFatJet" if kind == "scouting" else "FatJet"
        a = t.arrays([f"{jets}_{k}" for k in ("mass", "msoftdrop", "tau1", "tau2", "tau3")])
        b = {k: np.asarray(ak.flatten(a[f"{jets}_{k}"]), np.float64) for k in (
            "mass", "msoftdrop", "tau1", "tau2", "tau3")}
        x = np.stack([b["mass"], b["msoftdrop"], _ratio(b["tau2"], b["tau1"]),
                      _ratio(b["tau3"], b["tau2"])], axis=1)
        return x, ak.to_numpy(ak.num(a[f"{jets}_mass"]))


@pytest.mark.parametrize(("kind", "file", "tree", "model", "extra"), [
    ("nanoaod", "nano_tt_v15.root", "Events", "nano_fatjet_ae", []),
    ("treemaker", "treemaker.root", "PreSelection", "svj_treemaker_ae",
     ["--schema", "treemaker", "--jets", "JetsAK8"]),
    ("scouting", "scouting_nano.root", "Events", "nano_fatjet_ae",
     ["--schema", "scouting", "--jets", "ScoutingFatJet"]),
])
def test_score_cli_on_branch_models_equals_onnxruntime_on_the_raw_branches(
        cms_data, tmp_path, kind, file, tree, model, extra):
    """`coffea-ad score` with the shipped branch models on plain NanoAOD, TreeMaker and
    scouting files: the friend equals ONNX Runtime run directly on inputs built by hand
    from the branches (the scaling is inside these graphs)."""
    import onnxruntime as ort
    from click.testing import CliRunner

    from coffea_ad.cli import main

    onnx_path = Path(__file__).resolve().parents[1] / "models" / f"{model}.onnx"
    out = tmp_path / "scores.root"
    result = CliRunner().invoke(main, ["score", str(cms_data / file), "-m", str(onnx_path),
                                       "-o", str(out), "--tree", tree, *extra])
    assert result.exit_code == 0, result.output
    x, counts = _branch_inputs(cms_data / file, tree, kind)
    assert len(x) > 15
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = session.run(["loss"], {"features": x.astype(np.float32)})[0]
    with uproot.open(out) as f:
        friend = f[tree].arrays()
    jets = {"nanoaod": "FatJet", "treemaker": "JetsAK8", "scouting": "ScoutingFatJet"}[kind]
    np.testing.assert_array_equal(ak.to_numpy(ak.num(friend[f"{jets}_{model}"])), counts)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(friend[f"{jets}_{model}"])), want,
                               rtol=1e-5, atol=1e-6)
    if kind == "treemaker":
        assert "EvtNum" in friend.fields


# ------------------------------------------------------------------- filesets as users have
def test_preprocess_fileset_gives_the_plain_fileset_histograms(cms_data, tmp_path):
    """The JSON written from coffea.dataset_tools.preprocess (steps, uuid, num_entries per
    file), the {path: tree} form and the list form fill the same histograms."""
    import json

    from coffea.dataset_tools import preprocess

    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    # the branch model: nano_dy.root has no PF candidates
    model = Path(__file__).resolve().parents[1] / "models" / "nano_fatjet_ae.onnx"
    plain = {"dy": {"files": {str(cms_data / "nano_dy.root"): "Events"},
                    "metadata": {"xsec": 6000.0}},
             "pf": {"files": {str(cms_data / "pfnano.root"): "Events"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coffea advertises its pydantic API for dict input
        made, _ = preprocess(plain, step_size=7)
    path = tmp_path / "preprocessed.json"
    path.write_text(json.dumps(made))
    entry = json.loads(path.read_text())["dy"]["files"][str(cms_data / "nano_dy.root")]
    assert entry["num_entries"] == 40
    assert entry["steps"][0] == [0, 7]
    listed = {"dy": [str(cms_data / "nano_dy.root")], "pf": [str(cms_data / "pfnano.root")]}
    outs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # schema cross-references
        for label, fs in (("plain", plain), ("preprocess", path), ("list", listed)):
            proc = SVJProcessor(model, tag_threshold=0.3, min_pt=170.0)
            outs[label] = run_processor(fs, proc, executor="iterative")
    want = outs["plain"]["hists"]["events"]
    assert want[{"dataset": "pf"}].sum(flow=True).value == 10
    # DY has fewer than two AK8 jets per event: its histograms are empty, its cutflow is not
    assert outs["plain"]["cutflow"]["dy"]["all"] == 40
    for label in ("preprocess", "list"):
        assert outs[label]["entries"] == outs["plain"]["entries"] == {"dy": 40, "pf": 10}
        assert outs[label]["cutflow"] == outs["plain"]["cutflow"]
        for name, h in outs["plain"]["hists"].items():
            np.testing.assert_array_equal(outs[label]["hists"][name].values(flow=True),
                                          h.values(flow=True), f"{label} {name}")


def test_lumi_without_xsec_or_sumw_is_refused_before_any_file_is_opened(tmp_path):
    from coffea_ad.errors import FilesetError
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    # files that do not exist: the error must be about normalisation, raised before opening
    fileset = {"a": {"files": [str(tmp_path / "missing_a.root")],
                     "metadata": {"xsec": 1.0, "sumw": 10.0}},
               "b": {"files": [str(tmp_path / "missing_b.root")], "metadata": {"xsec": 2.0}},
               "c": {"files": [str(tmp_path / "missing_c.root")]}}
    proc = SVJProcessor(model, tag_threshold=0.3, lumi_fb=59.8)
    with pytest.raises(FilesetError, match=r"dataset 'b' lacks sumw; 'c' lacks xsec, sumw"):
        run_processor(fileset, proc, executor="iterative")


# ------------------------------------------------------------- TreeMaker through the processor
TM_VARIATIONS = {"jesUp": "JECup", "jesDown": "JECdown", "jerUp": "JERup", "jerDown": "JERdown"}


def _treemaker_reference(path: Path):
    """Nominal and varied m_T of the two leading AK8 jets + MET, by hand from the branches:
    varied four-momenta from jecUnc / jerFactor*, jets taken in the order the file stores for
    each variation ({V}_origIndex)."""
    with uproot.open(path) as f:
        a = f["PreSelection"].arrays(filter_name=["JetsAK8*", "MET", "METPhi", "MT_AK8"])
    out = {}
    for label in ("nominal", *TM_VARIATIONS):
        mts = []
        for e in range(len(a)):
            pt = np.asarray(a["JetsAK8.fCoordinates.fPt"][e], np.float64)
            eta = np.asarray(a["JetsAK8.fCoordinates.fEta"][e], np.float64)
            phi = np.asarray(a["JetsAK8.fCoordinates.fPhi"][e], np.float64)
            energy = np.asarray(a["JetsAK8.fCoordinates.fE"][e], np.float64)
            orig = list(a["JetsAK8_origIndex"][e])
            jer = np.asarray(a["JetsAK8_jerFactor"][e], np.float64)
            if label == "nominal":
                order, factor = list(range(len(pt))), np.ones(len(pt))
            else:
                v = TM_VARIATIONS[label]
                order = [orig.index(o) for o in a[f"JetsAK8{v}_origIndex"][e] if o in orig]
                if v.startswith("JEC"):
                    sign = 1.0 if v.endswith("up") else -1.0
                    jer_v = dict(zip(a[f"JetsAK8{v}_origIndex"][e],
                                     np.asarray(a[f"JetsAK8{v}_jerFactor"][e], np.float64),
                                     strict=True))
                    factor = np.array([(1 + sign * a["JetsAK8_jecUnc"][e][i])
                                       * jer_v[orig[i]] / jer[i] for i in range(len(pt))])
                else:
                    shifted = np.asarray(a[f"JetsAK8_jerFactor{v[3:].title()}"][e], np.float64)
                    factor = shifted / jer
            j = [i for i in order if pt[i] * factor[i] > 170 and abs(eta[i]) < 2.4][:2]
            px = sum(pt[i] * factor[i] * np.cos(phi[i]) for i in j)
            py = sum(pt[i] * factor[i] * np.sin(phi[i]) for i in j)
            pz = sum(pt[i] * factor[i] * np.sinh(eta[i]) for i in j)
            en = sum(energy[i] * factor[i] for i in j)
            m2 = en**2 - px**2 - py**2 - pz**2
            met, mphi = float(a["MET"][e]), float(a["METPhi"][e])
            mt2 = m2 + 2 * (np.sqrt(m2 + px**2 + py**2) * met
                            - (px * met * np.cos(mphi) + py * met * np.sin(mphi)))
            mts.append(np.sqrt(max(mt2, 0.0)))
        out[label] = np.array(mts)
    return out, np.asarray(a["MT_AK8"], np.float64)


def test_treemaker_variations_reproduce_the_stored_orders(cms_data):
    """Our varied p_T orders each variation's jets exactly as TreeMaker stored them."""
    from coffea.nanoevents import NanoEventsFactory, TreeMakerSchema

    from coffea_ad.systematics import treemaker_jet_variations

    path = cms_data / "treemaker.root"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root({str(path): "PreSelection"},
                                             schemaclass=TreeMakerSchema, mode="virtual").events()
    variations = treemaker_jet_variations(events)
    assert sorted(variations) == sorted(TM_VARIATIONS)
    with uproot.open(path) as f:
        stored = f["PreSelection"].arrays(filter_name=["JetsAK8*_origIndex"])
    reordered = 0
    for label, v in TM_VARIATIONS.items():
        assert variations[label]["origIndex"].tolist() == stored[f"JetsAK8{v}_origIndex"].tolist()
        reordered += sum(o != n for o, n in zip(stored[f"JetsAK8{v}_origIndex"].tolist(),
                                                stored["JetsAK8_origIndex"].tolist(),
                                                strict=True))
    assert reordered > 0  # some variation swaps the leading jets on this file


def test_svj_on_treemaker_mt_equals_mt_ak8_and_variations_move_it(cms_data):
    """`coffea-ad run svj --schema treemaker`: m_T equals TreeMaker's MT_AK8 and each JEC/JER
    variation fills the systematic axis with the m_T computed by hand for it."""
    import hist
    from coffea.nanoevents import TreeMakerSchema

    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    model = Path(__file__).resolve().parents[1] / "models" / "svj_treemaker_ae.onnx"
    proc = SVJProcessor(model, tag_threshold=0.3, min_pt=170.0, jets="JetsAK8",
                        variations="treemaker")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = run_processor({"tm": {"files": {str(cms_data / "treemaker.root"): "PreSelection"}}},
                            proc, executor="iterative", schema=TreeMakerSchema)
    h = out["hists"]["events"][{"dataset": "tm", "category": sum, "score": sum}]
    ref, mt_ak8 = _treemaker_reference(cms_data / "treemaker.root")
    np.testing.assert_allclose(ref["nominal"], mt_ak8, rtol=1e-6)  # the hand formula is right
    assert set(h.axes["systematic"]) == {"nominal", *TM_VARIATIONS}
    for label, mts in ref.items():
        want = hist.Hist(h.axes["mt"], storage=hist.storage.Weight()).fill(mt=mts)
        np.testing.assert_array_equal(h[{"systematic": label}].values(flow=True),
                                      want.values(flow=True), label)
    # direction: every event's m_T goes up with JES up, down with JES down
    assert np.all(ref["jesUp"] > ref["nominal"])
    assert np.all(ref["jesDown"] < ref["nominal"])
    centres = h.axes["mt"].centers
    mean = {s: float((h[{"systematic": s}].values() * centres).sum()) for s in ref}
    assert mean["jesUp"] >= mean["nominal"] >= mean["jesDown"]
    assert mean["jesUp"] > mean["jesDown"]


# ------------------------------------------------------------- NanoAOD, scouting, working points
def test_run_cli_on_nanoaod_with_jerc_variations_and_a_working_point(cms_data, tmp_path):
    """`coffea-ad run svj` on nano_tt_v15 with the branch model, JES/JER from the real CMS
    correctionlib file and the tag threshold read from a binned working point JSON: the
    nominal, JES and JER histograms equal a hand computation (correctionlib evaluated here on
    the raw branches, gen matching by a loop, jets re-ordered, m_T and tags by hand)."""
    import json

    import correctionlib
    import onnxruntime as ort
    from click.testing import CliRunner

    from coffea_ad.cli import main
    from coffea_ad.inference import write_working_point

    shipped = Path(__file__).resolve().parents[1] / "models" / "nano_fatjet_ae.onnx"
    model = tmp_path / "nano_fatjet_ae.onnx"
    model.write_bytes(shipped.read_bytes())
    (tmp_path / "nano_fatjet_ae.json").write_bytes(shipped.with_suffix(".json").read_bytes())
    write_working_point(model, [0.15, 0.25], pt_edges=[170.0, 400.0, 3000.0])
    jerc = cms_data / "jet_jerc_Summer22_V3.json.gz"
    fileset = tmp_path / "fs.json"
    fileset.write_text(json.dumps({"tt": {"files": {str(cms_data / "nano_tt_v15.root"): "Events"}}}))
    result = CliRunner().invoke(main, [
        "run", "svj", "-f", str(fileset), "-m", str(model), "--schema", "nanoaod",
        "--set", "tag_threshold=model", "--set", "min_pt=170", "--set", f"variations={jerc}",
        "--executor", "iterative", "--no-progress", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    from coffea.util import load

    hfile = next((tmp_path / "out").rglob("*.coffea"))
    h = load(hfile)["hists"]["events"][{"dataset": "tt", "score": sum}]
    assert set(h.axes["systematic"]) == {"nominal", "jesUp", "jesDown", "jerUp", "jerDown"}

    # the reference, by hand
    with uproot.open(cms_data / "nano_tt_v15.root") as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass",
                                "FatJet_msoftdrop", "FatJet_tau1", "FatJet_tau2",
                                "FatJet_tau3", "PFMET_pt", "PFMET_phi", "genWeight"])
    unc = correctionlib.CorrectionSet.from_file(str(jerc))[
        "Summer22_22Sep2023_V3_MC_Total_AK4PFPuppi"]
    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    wp = correctionlib.CorrectionSet.from_file(str(tmp_path / "nano_fatjet_ae_wp.json"))["tag"]
    sf = correctionlib.CorrectionSet.from_file(str(jerc))[
        "Summer22_22Sep2023_JRV1_MC_ScaleFactor_AK4PFPuppi"]
    with uproot.open(cms_data / "nano_tt_v15.root") as f:
        gen = f["Events"].arrays(["GenJetAK8_pt", "GenJetAK8_eta", "GenJetAK8_phi"])

    def jer_factor(e, pt, eta, phi, which):
        """Hybrid JER: closest GenJetAK8 within ΔR < 0.4, gen + SF_v/SF_nom (pt - gen)."""
        out = np.ones(len(pt))
        for i in range(len(pt)):
            dr = [np.hypot(eta[i] - ge, (phi[i] - gp + np.pi) % (2 * np.pi) - np.pi)
                  for ge, gp in zip(gen.GenJetAK8_eta[e], gen.GenJetAK8_phi[e], strict=True)]
            if dr and min(dr) < 0.4:
                g = float(gen.GenJetAK8_pt[e][int(np.argmin(dr))])
                ratio = sf.evaluate(eta[i], pt[i], which) / sf.evaluate(eta[i], pt[i], "nom")
                out[i] = max(g + ratio * (pt[i] - g), 0.0) / pt[i]
        return out

    mean_mt = {}
    for label, sign in (("nominal", 0.0), ("jesUp", 1.0), ("jesDown", -1.0),
                        ("jerUp", "up"), ("jerDown", "down")):
        rows = []
        for e in range(len(a)):
            pt = np.asarray(a.FatJet_pt[e], np.float64)
            eta = np.asarray(a.FatJet_eta[e], np.float64)
            if isinstance(sign, str):
                f = jer_factor(e, pt, eta, np.asarray(a.FatJet_phi[e], np.float64), sign)
            else:
                f = 1.0 + sign * np.asarray([unc.evaluate(x, p) for x, p in zip(eta, pt,
                                                                                  strict=True)])
            order = np.argsort(-(pt * f), kind="stable")
            good = [i for i in order if pt[i] * f[i] > 170 and abs(eta[i]) < 2.4][:2]
            if len(good) < 2:
                continue
            phi = np.asarray(a.FatJet_phi[e], np.float64)
            m = np.asarray(a.FatJet_mass[e], np.float64) * f
            ptv = pt * f
            px, py = ptv * np.cos(phi), ptv * np.sin(phi)
            pz, en = ptv * np.sinh(eta), np.sqrt((ptv * np.cosh(eta)) ** 2 + m**2)
            g = good
            sx, sy, sz, se = px[g].sum(), py[g].sum(), pz[g].sum(), en[g].sum()
            m2 = se**2 - sx**2 - sy**2 - sz**2
            met, mphi = float(a.PFMET_pt[e]), float(a.PFMET_phi[e])
            mt = np.sqrt(max(m2 + 2 * (np.sqrt(m2 + sx**2 + sy**2) * met
                                       - (sx * met * np.cos(mphi) + sy * met * np.sin(mphi))),
                             0.0))
            t1, t2, t3 = (np.asarray(a[f"FatJet_tau{k}"][e], np.float64) for k in (1, 2, 3))
            x = np.stack([m, np.asarray(a.FatJet_msoftdrop[e], np.float64),
                          np.where(t1 > 0, t2 / np.where(t1 > 0, t1, 1), 0),
                          np.where(t2 > 0, t3 / np.where(t2 > 0, t2, 1), 0)], 1)[g]
            score = session.run(["loss"], {"features": x.astype(np.float32)})[0]
            ntag = int(sum(s > wp.evaluate(float(ptv[i])) for s, i in zip(score, g, strict=True)))
            rows.append((ntag, mt, float(a.genWeight[e])))
        assert len(rows) > 10
        ntag, mt, w = (np.array(c) for c in zip(*rows, strict=True))
        mean_mt[label] = float(mt.mean())
        for cat in (0, 1, 2):
            want, _ = np.histogram(mt[ntag == cat], bins=h.axes["mt"].edges, weights=w[ntag == cat])
            got = h[{"systematic": label, "category": hist_index(h, cat)}].values()
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"{label} {cat}")
    # the histograms equal these: JES moves m_T in the direction of the shift
    assert mean_mt["jesUp"] > mean_mt["nominal"] > mean_mt["jesDown"]
    assert mean_mt["jerUp"] != mean_mt["jerDown"]


def _scouting_mt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(m_T of the two leading ScoutingFatJets (p_T > 170, |η| < 2.4) + ScoutingMET,
    genWeight) of the events that have them."""
    with uproot.open(path) as f:
        a = f["Events"].arrays(["ScoutingFatJet_pt", "ScoutingFatJet_eta", "ScoutingFatJet_phi",
                                "ScoutingFatJet_mass", "ScoutingMET_pt", "ScoutingMET_phi",
                                "genWeight"])
    mts, ws = [], []
    for e in range(len(a)):
        pt, eta, phi, m = (np.asarray(a[f"ScoutingFatJet_{k}"][e], np.float64)
                           for k in ("pt", "eta", "phi", "mass"))
        g = [i for i in range(len(pt)) if pt[i] > 170 and abs(eta[i]) < 2.4][:2]
        if len(g) < 2:
            continue
        px, py, pz = pt[g] * np.cos(phi[g]), pt[g] * np.sin(phi[g]), pt[g] * np.sinh(eta[g])
        en = np.sqrt(px**2 + py**2 + pz**2 + m[g] ** 2)
        sx, sy, sz, se = px.sum(), py.sum(), pz.sum(), en.sum()
        m2 = se**2 - sx**2 - sy**2 - sz**2
        met, mphi = float(a.ScoutingMET_pt[e]), float(a.ScoutingMET_phi[e])
        mts.append(np.sqrt(max(m2 + 2 * (np.sqrt(m2 + sx**2 + sy**2) * met
                                         - (sx * met * np.cos(mphi) + sy * met * np.sin(mphi))),
                               0.0)))
        ws.append(float(a.genWeight[e]))
    return np.array(mts), np.array(ws)


def hist_index(h, value):
    import hist

    return hist.loc(value)


# ScoutingNanoAODSchema warns about cross-references (Electron -> GenPart) the file lacks
@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
def test_run_cli_on_scouting_and_treemaker_schemas(cms_data, tmp_path):
    """`--schema scouting` and `--schema treemaker` pick the format's jets and MET."""
    import json

    from click.testing import CliRunner
    from coffea.util import load

    from coffea_ad.cli import main

    models = Path(__file__).resolve().parents[1] / "models"
    cases = [("scouting", "scouting_nano.root", "Events", "nano_fatjet_ae", 40),
             ("treemaker", "treemaker.root", "PreSelection", "svj_treemaker_ae", 10)]
    for schema, file, tree, model, n in cases:
        fs = tmp_path / f"{schema}.json"
        fs.write_text(json.dumps({"d": {"files": {str(cms_data / file): tree}}}))
        out = tmp_path / schema
        result = CliRunner().invoke(main, [
            "run", "svj", "-f", str(fs), "-m", str(models / f"{model}.onnx"),
            "--schema", schema, "--set", "tag_threshold=0.2", "--set", "min_pt=170",
            "--executor", "iterative", "--no-progress", "-o", str(out)])
        assert result.exit_code == 0, result.output
        res = load(next(out.rglob("*.coffea")))
        assert res["cutflow"]["d"]["all"] == n
        assert res["hists"]["events"].sum(flow=True).value > 0
        if schema == "scouting":  # m_T from ScoutingFatJet + ScoutingMET, by hand
            import hist

            h = res["hists"]["events"][{"dataset": "d", "systematic": "nominal",
                                        "category": sum, "score": sum}]
            want = hist.Hist(h.axes["mt"], storage=hist.storage.Weight())
            mt, w = _scouting_mt(cms_data / file)
            assert len(mt) > 20
            want.fill(mt=mt, weight=w)
            np.testing.assert_allclose(h.values(flow=True), want.values(flow=True), rtol=1e-9)
