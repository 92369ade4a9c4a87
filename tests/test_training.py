"""Training recipes end to end: generated samples and real CMS PFNano in, ONNX + contract +
card out, metrics that can be recomputed independently from the exported file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from coffea_ad.errors import UnknownNameError
from coffea_ad.inference.contract import ModelContract, file_sha256

FAST = {"epochs": 3, "batch_size": 64, "threads": 1}


@pytest.fixture(scope="module")
def dense_run(small_fileset, tmp_path_factory):
    from coffea_ad.training import dense_ae

    out = tmp_path_factory.mktemp("dense") / "models" / "dense_ae"
    return dense_ae.run({**FAST, "epochs": 10}, small_fileset, out), out


def test_dense_ae_writes_model_contract_card_and_plot(dense_run, small_fileset):
    metrics, out = dense_run
    for suffix in (".onnx", ".json", ".md", "_loss.png"):
        assert out.with_name(out.name + suffix).is_file(), suffix
    contract = ModelContract.read(out.with_name("dense_ae.onnx"))
    assert (contract.kind, contract.level, contract.jets, contract.score) == (
        "autoencoder", "jet", "FatJet", "loss")
    assert contract.features == ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
    assert contract.inputs[0].scaling == "in_graph"
    files = small_fileset["qcd"]["files"]
    assert contract.training["files"] == {p: file_sha256(p) for p in files}  # svj not trained on
    assert contract.training["datasets"] == ["qcd"]
    assert set(metrics["auc"]) == {"svj"}
    assert contract.metrics["auc"] == metrics["auc"]
    assert metrics["n_train"] == contract.training["n_jets"]["train"] > 100
    card = out.with_name("dense_ae.md").read_text()
    assert "svj" in card
    assert "sha256" in card
    assert f"{metrics['auc']['svj']}" in card


def test_dense_ae_auc_is_reproduced_from_the_exported_onnx(dense_run, small_fileset):
    """Recompute the recipe's AUC without the recipe: same split (seeded), ONNX Runtime
    scores through the scorer's path, the stats AUC."""
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.nn.data import concat_tables, load_jet_tables, split_indices
    from coffea_ad.stats.roc import auc

    metrics, out = dense_run
    scorer = OnnxScorer(out.with_name("dense_ae.onnx"))
    tables = load_jet_tables(small_fileset, scorer.contract.features, min_pt=200.0)
    bkg = concat_tables([tables["qcd"]])
    _, _, te = split_indices(len(bkg), val_fraction=0.2, test_fraction=0.2, seed=0,
                             groups=bkg.event)
    value = auc(scorer(bkg.x[te]), scorer(tables["svj"].x), weights_bkg=bkg.weight[te],
                weights_sig=tables["svj"].weight)
    assert value == pytest.approx(metrics["auc"]["svj"], abs=1e-4)


def test_dense_ae_on_real_cms_pfnano_is_deterministic(cms_data, tmp_path):
    """Real PFNano (no FatJet_nConstituents): trains, and the same seed gives the same model."""
    from coffea_ad.training import dense_ae

    path = str(cms_data / "pfnano.root")
    fileset = {"data": {"files": {path: "Events"}, "metadata": {"is_signal": False}}}
    cfg = {**FAST, "min_pt": 0.0, "epochs": 4}
    m1 = dense_ae.run(cfg, fileset, tmp_path / "a")
    m2 = dense_ae.run(cfg, fileset, tmp_path / "b")
    assert m1["n_train"] + m1["n_val"] + m1["n_test"] == 20  # 10 events x 2 leading FatJets
    assert m1["best_val_loss"] == m2["best_val_loss"]
    x = np.random.default_rng(0).normal(size=(9, 6)) + np.array([0, 0, 150, 0.5, 0.02, 0.01])
    x = x.astype(np.float32)
    outs = [ort.InferenceSession(str(tmp_path / f"{n}.onnx")).run(None, {"features": x})[0]
            for n in "ab"]
    np.testing.assert_array_equal(outs[0], outs[1])
    contract = ModelContract.read(tmp_path / "a.json")
    assert contract.training["files"] == {path: file_sha256(path)}


def test_unknown_config_key_is_refused_with_the_valid_ones(small_fileset, tmp_path):
    from coffea_ad.training import dense_ae

    with pytest.raises(UnknownNameError, match=r"unknown dense_ae config key .hiddden.*hidden"):
        dense_ae.run({"hiddden": [4]}, small_fileset, tmp_path / "x")
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        dense_ae.run({"train_datasets": ["nope"]}, small_fileset, tmp_path / "x")


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("coffea-ad"))  # the script of this environment
    cmd = [exe, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_cli_train_runs_a_recipe_and_names_unknown_ones(small_fileset, tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    res = _cli("train", "pca", "--fileset", str(fileset), "--set", "n_components=2",
               "--set", "bdt=false", "--out", str(tmp_path / "models" / "pca"))
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert ModelContract.read(tmp_path / "models" / "pca.json").metrics["auc"] == printed["auc"]
    assert "bdt_auc" not in printed
    res = _cli("train", "dense_aee", "--fileset", str(fileset), "--out", str(tmp_path / "m"))
    assert res.returncode != 0
    assert "unknown recipe 'dense_aee'" in res.stderr
    assert "dense_ae" in res.stderr
    res = _cli("train", "pca", "--fileset", str(fileset), "--set", "n_comp=2", "--out",
               str(tmp_path / "m"))
    assert res.returncode != 0
    assert "unknown pca config key 'n_comp'" in res.stderr
    assert "n_components" in res.stderr


def test_recipe_list_is_every_family():
    from coffea_ad.cli.train import RECIPES

    assert set(RECIPES) >= {"dense_ae", "vae", "vae_dnn", "particle_vae", "gae", "cvae", "qr",
                            "pca"}


@pytest.mark.parametrize(("name", "config", "kind"), [
    ("particle_vae", {"n_particles": 16, "n_out": 12, "hidden": 16}, "particle_vae"),
    ("gae", {"n_particles": 16, "hidden": [8], "latent": 3}, "graph_autoencoder"),
    ("cvae", {"sr_low": 2700.0, "sr_high": 3300.0, "min_pt": 200.0, "hidden": [16, 16]}, "cvae"),
    ("cvae", {"sr_low": 2700.0, "sr_high": 3300.0, "min_pt": 200.0, "hidden": [16, 16],
              "beta": 0.01, "prior_components": 2, "latent": 3}, "cvae"),
])
def test_constituent_and_resonant_recipes_export_valid_models(name, config, kind, small_fileset,
                                                              tmp_path):
    import importlib

    module = importlib.import_module(f"coffea_ad.training.{name}")
    metrics = module.run({**FAST, "epochs": 2, **config}, small_fileset, tmp_path / name)
    contract = ModelContract.read(tmp_path / f"{name}.json")
    assert contract.kind == kind
    sess = ort.InferenceSession(str(tmp_path / f"{name}.onnx"))
    assert [i.name for i in sess.get_inputs()] == contract.input_names
    # the export check ran inside the recipe at another batch size and is recorded
    assert set(contract.extra["onnx_vs_torch_max_abs_diff"]) == set(contract.output_names)
    auc_key = "auc_sr" if name == "cvae" else "auc"
    assert 0.0 <= metrics[auc_key]["svj"] <= 1.0
    if name == "gae":  # φ is dphi, relative to the jet axis: the graph has no Δφ wrap
        import onnx

        assert contract.input("particles").features[1] == "dphi"
        ops = {node.op_type for node in onnx.load(str(tmp_path / "gae.onnx")).graph.node}
        # the normalized adjacency is a derived input: no ΔR built (and no wrap) in the graph
        assert contract.input_names == ["particles", "mask", "adjacency"]
        assert contract.input("adjacency").graph["periodic_phi"] is False
        assert not {"Round", "Less"} & ops
        assert "MatMul" in ops
        _scorer_derives_the_adjacency_of_the_graph(tmp_path / "gae.onnx", contract)
    if name == "cvae":
        sampler = ModelContract.read(tmp_path / "cvae_sampler.json")
        assert sampler.input_names == ["noise", "condition"]
        # latent, one per feature, and with a mixture prior the component column
        n_f = len(contract.input("features").features)
        width = config.get("latent", 4) + n_f + (1 if config.get("prior_components") else 0)
        noise = sampler.input("noise")
        assert noise.shape == [width]
        assert len(noise.features) == width
        sess = ort.InferenceSession(str(tmp_path / "cvae_sampler.onnx"))
        out = sess.run(None, {"noise": np.zeros((3, width), np.float32),
                              "condition": np.full((3, 1), 3000.0, np.float32)})[0]
        assert out.shape == (3, n_f)
        assert np.all(np.isfinite(out))


def _scorer_derives_the_adjacency_of_the_graph(path, contract):
    """OnnxScorer (adjacency derived per batch) against ONNX Runtime fed the adjacency of
    the torch graph function, normalized here in float64."""
    import torch

    from coffea_ad.inference import OnnxScorer
    from coffea_ad.nn.graph_ae import delta_r_adjacency

    rng = np.random.default_rng(5)
    n = contract.input("particles").pad_length
    n_real = rng.integers(1, n + 1, 40)
    mask = (np.arange(n)[None, :] < n_real[:, None]).astype(np.float32)
    x = rng.normal(0, 1, (40, n, len(contract.input("particles").features)))
    x[..., :2] *= 0.1  # Δη, Δφ within a jet: some pairs closer than r_c = 0.1, some not
    x = (x * mask[..., None]).astype(np.float32)
    a = delta_r_adjacency(torch.from_numpy(x[..., 0]), torch.from_numpy(x[..., 1]),
                          torch.from_numpy(mask), r_c=0.1, periodic_phi=False).numpy()
    assert 0 < (a * (1 - np.eye(n))).sum() < (mask.sum(1) ** 2).sum()  # links, not all
    s = mask / np.sqrt(np.maximum(a.astype(np.float64).sum(axis=2), 1.0))
    norm = (s[:, :, None] * a * s[:, None, :]).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(
        ["loss"], {"particles": x, "mask": mask, "adjacency": norm})[0]
    got = OnnxScorer(path, batch_size=16)({"particles": x, "mask": mask})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_qr_recipe_on_the_dense_ae_score(dense_run, small_fileset, tmp_path):
    from coffea_ad.training import qr

    _, out = dense_run
    metrics = qr.run({**FAST, "epochs": 30, "batch_size": 128, "min_pt": 200.0,
                      "model": str(out.with_name("dense_ae.onnx")), "quantiles": [0.5, 0.8]},
                     small_fileset, tmp_path / "qr")
    # the pinball fit on ~200 events: efficiencies near 1 - tau on held-out events
    eff = metrics["background_efficiency"]
    assert eff["0.5"] == pytest.approx(0.5, abs=0.15)
    assert eff["0.8"] == pytest.approx(0.2, abs=0.12)
    q = ort.InferenceSession(str(tmp_path / "qr.onnx")).run(
        None, {"inputs": np.array([[1500.0], [2500.0], [3500.0]], np.float32)})[0]
    assert np.all(q[:, 1] > q[:, 0])  # quantiles do not cross


@pytest.fixture(scope="module")
def vbs_fileset(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from coffea_ad.samples import generate_fileset

    return generate_fileset({"wz": {"process": "wz", "events": 300},
                             "hpp": {"process": "hpp", "events": 150}},
                            out=tmp_path_factory.mktemp("vbs"), seed=2)


@pytest.mark.parametrize("name", ["vae", "vae_dnn"])
def test_vbs_recipes_report_auc_and_significance(name, vbs_fileset, tmp_path):
    import importlib

    module = importlib.import_module(f"coffea_ad.training.{name}")
    metrics = module.run({**FAST, "epochs": 4}, vbs_fileset, tmp_path / name)
    contract = ModelContract.read(tmp_path / f"{name}.json")
    assert contract.level == "event"
    assert contract.features[0] == "lep1_pt"
    assert 0 <= metrics["auc"]["hpp"] <= 1
    sig = metrics["significance"]["hpp"]
    # σ = |BSM − SM| / √SM of the recorded yields at the best cut
    assert sig["sigma"] == pytest.approx(abs(sig["n_bsm"] - sig["n_sm"]) / np.sqrt(sig["n_sm"]),
                                         abs=1e-3)


def test_cli_train_prints_one_line_per_epoch_and_quiet_silences_it(small_fileset, tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    args = ("train", "dense_ae", "--fileset", str(fileset), "--set", "epochs=4",
            "--set", "batch_size=64", "--out")
    res = _cli(*args, str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("epoch")]
    assert [ln.split()[1] for ln in lines] == ["1/4", "2/4", "3/4", "4/4"]
    history = json.loads((tmp_path / "a_history.json").read_text())
    for line, loss, val, lr in zip(lines, history["train_loss"], history["val_loss"],
                                   history["lr"], strict=True):
        fields = line.split()
        assert float(fields[3]) == pytest.approx(loss, rel=1e-4)
        assert float(fields[6]) == pytest.approx(val, rel=1e-4)
        assert float(fields[8]) == pytest.approx(lr, rel=1e-2)
    assert json.loads(res.stdout)["best_val_loss"] == pytest.approx(min(history["val_loss"]))
    quiet = _cli(*args, str(tmp_path / "b"), "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("epoch")]


def test_contract_records_the_whole_resolved_config(dense_run):
    from coffea_ad.training import dense_ae

    _, out = dense_run
    contract = ModelContract.read(out.with_name("dense_ae.onnx"))
    # every CONFIG key, defaults included, with the run's overrides (as JSON holds them)
    expected = json.loads(json.dumps({**dense_ae.CONFIG, **FAST, "epochs": 10}, default=str))
    assert contract.training["config"] == expected


def test_cli_train_config_file_then_set_lands_in_the_contract(small_fileset, tmp_path):
    from coffea_ad.training import pca

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    config = tmp_path / "pca.yaml"
    config.write_text("n_components: 3\nbdt: false\n")
    res = _cli("train", "pca", "--fileset", str(fileset), "--config", str(config),
               "--set", "n_components=2", "--out", str(tmp_path / "models" / "pca"))
    assert res.returncode == 0, res.stderr
    recorded = ModelContract.read(tmp_path / "models" / "pca.json").training["config"]
    expected = json.loads(json.dumps({**pca.CONFIG, "n_components": 2, "bdt": False},
                                     default=str))
    assert recorded == expected
