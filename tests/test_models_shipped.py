"""The models shipped in models/: contract valid, loss output equal to the formula it claims,
usable on the real PFNano file."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from coffea_ad.inference import OnnxScorer
from coffea_ad.inference.contract import ModelContract

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))


def test_there_are_shipped_models():
    assert [m.stem for m in MODELS] == ["svj_dense_ae", "svj_flow"]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_contract_and_card(model):
    contract = ModelContract.read(model)
    assert contract.name == model.stem
    assert model.with_suffix(".md").is_file()
    if "samples" in contract.training:  # described by content: regenerable
        for sample in contract.training["samples"].values():
            assert {"process", "seed", "nevents", "settings"} <= set(sample)
        assert contract.training["command"]
        assert contract.training["package_version"]
        assert len(contract.training["git_commit"].split()[0]) == 40
    else:  # the baseline still names its files by sha256
        assert all(len(h) == 64 for h in contract.training["files"].values())
    assert all(0.5 < v < 1.0 for v in contract.metrics["auc"].values())


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


SVJ_FLOW = Path(__file__).resolve().parents[1] / "models" / "svj_flow.onnx"


def test_default_svj_model_has_no_phi_eta_or_raw_kinematics():
    contract = ModelContract.read(SVJ_FLOW)
    assert not {"phi", "eta", "pt", "mass", "msoftdrop"} & set(contract.features)
    # the kinematics enter only as the condition
    assert contract.training["conditions"] == ["log_pt"]
    assert contract.features[0] == "log_pt"


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
