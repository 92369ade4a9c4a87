"""The models shipped in models/: contract valid, loss output equal to the formula it claims,
usable on the real PFNano file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coffea_ad.inference import OnnxScorer
from coffea_ad.inference.contract import ModelContract

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))


def test_there_are_shipped_models():
    assert [m.stem for m in MODELS] == ["nano_fatjet_ae", "svj_dense_ae", "svj_treemaker_ae"]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_contract_and_card(model):
    contract = ModelContract.read(model)
    assert contract.name == model.stem
    assert model.with_suffix(".md").is_file()
    assert contract.training["files"], "the contract must name the training files with sha256"
    assert all(len(h) == 64 for h in contract.training["files"].values())
    assert 0.5 < contract.metrics["auc"]["svj"] < 1.0


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
