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
    assert pid != os.getpid()
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
