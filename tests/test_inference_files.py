"""Scoring what CMS writes: real PFNano end to end, the friend tree, the CLI verbs.

The reference for each score is a direct ``onnxruntime`` call on the per-jet feature table
that :func:`coffea_ad.features.jet_features` computes from the same file (the features'
own correctness is tested with the features module), scaled by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from conftest import TINY_AE_CENTRE, TINY_AE_FEATURES, TINY_AE_SCALE

from coffea_ad.errors import MissingBranchError
from coffea_ad.inference import OnnxScorer, add_scores, write_score_friend

ort = pytest.importorskip("onnxruntime")
uproot = pytest.importorskip("uproot")


def _events(path: Path, mode: str = "virtual"):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        # PFNano files lack some cross-references coffea's schema looks for
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea\.nanoevents")
        return NanoEventsFactory.from_root(
            {str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode
        ).events()


def _reference_scores(model: Path, events) -> ak.Array:
    """Direct onnxruntime on the jet_features table, rebuilt per event by a loop."""
    from coffea_ad.features import jet_features

    table = jet_features(events, TINY_AE_FEATURES, jets="FatJet")
    counts = ak.num(table[TINY_AE_FEATURES[0]]).to_list()
    x = np.stack([ak.flatten(table[f]).to_numpy() for f in TINY_AE_FEATURES], axis=1)
    scaled = ((x.astype(np.float64) - TINY_AE_CENTRE) / TINY_AE_SCALE).astype(np.float32)
    (loss,) = ort.InferenceSession(str(model)).run(["loss"], {"features": scaled})
    out, i = [], 0
    for c in counts:
        out.append(loss[i : i + c].tolist())
        i += c
    return out


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("coffea-ad"))  # the script of this environment
    cmd = [exe, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("mode", ["eager", "virtual"])
def test_pfnano_scored_end_to_end(tiny_ae_onnx, pfnano_file, mode):
    events = _events(pfnano_file, mode)
    scorer = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    got = scorer.score_events(events)
    assert str(got.type) == "10 * var * float32"
    assert ak.num(got).tolist() == ak.num(events.FatJet).tolist()
    ref = _reference_scores(tiny_ae_onnx, events)
    for g, r in zip(got.tolist(), ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    # the one-liner puts the same numbers on the jets
    events = add_scores(events, tiny_ae_onnx, name="ae", intra_op_threads=1)
    assert ak.all(events.FatJet.ae == got)
    assert ak.all(events.FatJet.pt == _events(pfnano_file, "eager").FatJet.pt)  # jets untouched


def test_friend_tree_aligned_with_input(tiny_ae_onnx, pfnano_file, tmp_path):
    out = tmp_path / "scores.root"
    res = _cli("score", str(pfnano_file), "--model", str(tiny_ae_onnx), "-o", str(out),
               "--name", "ae", "--step-size", "3", "--threads", "1")
    assert res.returncode == 0, res.stderr
    assert "10 entries, 24 rows scored" in res.stdout
    assert "provider CPUExecutionProvider" in res.stdout
    with uproot.open(pfnano_file) as fin, uproot.open(out) as fout:
        tin, tout = fin["Events"], fout["Events"]
        assert tout.num_entries == tin.num_entries == 10
        assert set(tout.keys()) == {"run", "luminosityBlock", "event", "nFatJet", "FatJet_ae"}
        a = tin.arrays(["run", "luminosityBlock", "event", "nFatJet"], library="np")
        b = tout.arrays(["run", "luminosityBlock", "event", "nFatJet"], library="np")
        for key in ("run", "luminosityBlock", "event", "nFatJet"):
            # ids keep their NanoAOD types; uproot writes counters as int32 (NanoAOD: uint32)
            assert b[key].dtype == a[key].dtype or key == "nFatJet", key
            for i in range(10):  # entry by entry
                assert b[key][i] == a[key][i], (key, i)
        scores = tout["FatJet_ae"].array()
        info = json.loads(str(fout["coffea_ad_scores"]))
    ref = _reference_scores(tiny_ae_onnx, _events(pfnano_file))
    for g, r in zip(scores.tolist(), ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    assert info["provider"] == "CPUExecutionProvider"
    assert info["features"] == TINY_AE_FEATURES
    # chunking changes nothing beyond float32 rounding (MLAS GEMM blocking depends on the
    # batch length, so the last bit may differ)
    whole = write_score_friend(pfnano_file, tiny_ae_onnx, tmp_path / "whole.root", name="ae",
                               step_size=1000, intra_op_threads=1)
    assert whole.rows == 24
    assert whole.entries == 10
    with uproot.open(whole.output) as f:
        whole_scores = f["Events"]["FatJet_ae"].array()
    assert ak.num(whole_scores).tolist() == ak.num(scores).tolist()
    np.testing.assert_allclose(ak.flatten(whole_scores).to_numpy(), ak.flatten(scores).to_numpy(),
                               rtol=1e-6)


def test_empty_file_gives_empty_well_formed_friend(tiny_ae_onnx, cms_data, tmp_path):
    summary = write_score_friend(cms_data / "nano_dy_empty.root", tiny_ae_onnx,
                                 tmp_path / "empty.root", nonfinite="flag")
    assert summary.entries == 0
    assert summary.rows == 0
    assert summary.provider is None
    with uproot.open(summary.output) as f:
        t = f["Events"]
        assert t.num_entries == 0
        assert t.typenames() == {
            "run": "uint32_t", "luminosityBlock": "uint32_t", "event": "uint64_t",
            "nFatJet": "int32_t", "FatJet_tiny_ae": "float[]", "FatJet_tiny_ae_nonfinite": "bool[]",
        }
        assert len(t["FatJet_tiny_ae"].array()) == 0


def test_file_without_pf_candidates_is_refused_and_leaves_no_output(tiny_ae_onnx, cms_data, tmp_path):
    out = tmp_path / "dy.root"
    with pytest.raises(MissingBranchError, match="FatJetPFCands"):
        write_score_friend(cms_data / "nano_dy.root", tiny_ae_onnx, out)
    assert not out.exists()


def test_cli_errors_and_inspect(tiny_ae_onnx, tmp_path):
    res = _cli("inspect", str(tiny_ae_onnx), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["opset"] == 17
    assert info["graph_inputs"] == {"features": {"dtype": "float32", "shape": ["n", 6]}}
    assert info["graph_outputs"]["reconstruction"]["shape"] == ["n", 6]
    assert info["contract"]["inputs"][0]["features"] == TINY_AE_FEATURES
    assert "CPUExecutionProvider" in info["providers_available"]
    assert info["providers_selected"][-1] == "CPUExecutionProvider"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_ae_onnx.read_bytes()[:100])
    res = _cli("inspect", str(bad))
    assert res.returncode == 1
    assert "ModelFileError" in res.stderr
    assert "bad.onnx" in res.stderr
    assert "Traceback" not in res.stderr


def test_event_level_model_reads_the_event_variables(tiny_ae_onnx, pfnano_file, tmp_path):
    from coffea_ad.features import event_variables
    from coffea_ad.inference import ModelContract

    names = ["mjj", "deta_jj", "dphi_jj", "mt", "met", "dphi_min"]
    centre, scale = [1500.0, 1.0, 2.0, 1500.0, 200.0, 1.0], [500.0, 1.0, 1.0, 500.0, 100.0, 1.0]
    path = tmp_path / "event_ae.onnx"
    path.write_bytes(tiny_ae_onnx.read_bytes())
    data = ModelContract.read(tiny_ae_onnx).to_dict()
    data.update(name="event_ae", level="event", jets="FatJet")
    data["inputs"][0].update(features=names, centre=centre, scale=scale)
    ModelContract.from_dict(data).write(path)

    events = _events(pfnano_file)
    got = OnnxScorer(path).score_events(events)
    assert str(got.type) == "10 * float32"
    table = event_variables(events, jets="FatJet")
    x = np.stack([table[f].to_numpy() for f in names], axis=1).astype(np.float64)
    scaled = ((x - centre) / np.asarray(scale)).astype(np.float32)
    (ref,) = ort.InferenceSession(str(path)).run(["loss"], {"features": scaled})
    np.testing.assert_allclose(got.to_numpy(), ref, rtol=1e-5, atol=1e-6)
    # a friend tree of an event-level model: one value per event, no counter
    summary = write_score_friend(pfnano_file, path, tmp_path / "ev.root")
    with uproot.open(summary.output) as f:
        assert set(f["Events"].keys()) == {"run", "luminosityBlock", "event", "event_ae"}
        np.testing.assert_allclose(f["Events"]["event_ae"].array(library="np"), ref, rtol=1e-6)
    # a feature nothing provides is named, with what is available
    data["inputs"][0]["features"] = [*names[:5], "sphericity"]
    ModelContract.from_dict(data).write(path)
    with pytest.raises(MissingBranchError, match=r"'sphericity'.*available"):
        OnnxScorer(path).score_events(events)


@pytest.mark.parametrize("mode", ["virtual", "dask"])
def test_particle_model_scored_from_pfnano(pfnano_file, tmp_path, mode):
    """A constituent-level model (padded particles [8, 3] + mask [8]): score_events builds
    the particle lists with coffea_ad.features and puts the per-jet scores on the jets."""

    from coffea_ad.features import jet_constituents, particle_list
    from coffea_ad.inference import InputSpec, ModelContract, OutputSpec

    torch = pytest.importorskip("torch")

    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor([1.0, -2.0, 0.5]))

        def forward(self, particles, mask):
            return ((particles * self.w).sum(-1) * mask).sum(-1)

    path = tmp_path / "pool.onnx"
    torch.onnx.export(Pool(), (torch.zeros(2, 8, 3), torch.ones(2, 8)), str(path), dynamo=False,
                      opset_version=17, input_names=["particles", "mask"], output_names=["score"],
                      dynamic_axes={"particles": {0: "n"}, "mask": {0: "n"}, "score": {0: "n"}})
    feats = ["deta", "dphi", "log_pt"]
    ModelContract(
        name="pool", kind="particle_vae", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec("particles", feats, [8, 3], pad_length=8),
                InputSpec("mask", ["mask"], [8], pad_length=8)],
        outputs=[OutputSpec("score", "score")], score="score",
    ).write(path)

    eager = _events(pfnano_file, "eager")
    values, mask = particle_list(jet_constituents(eager, jets="FatJet"), eager.FatJet, n=8,
                                 features=feats)
    flat = ((np.asarray(values, np.float64) @ [1.0, -2.0, 0.5]) * np.asarray(mask)).sum(-1)
    counts = ak.num(eager.FatJet).to_list()

    scorer = OnnxScorer(path, intra_op_threads=1)
    got = scorer.score_events(_events(pfnano_file, mode))
    if mode == "dask":
        assert scorer.stats.calls == 0  # graph built, model not run on the client
        got = got.compute()
    assert ak.num(got).to_list() == counts
    np.testing.assert_allclose(ak.flatten(got).to_numpy(), flat, rtol=1e-5, atol=1e-5)
