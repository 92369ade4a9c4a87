"""The bad inputs of docs/bad-inputs.md: each row has a test here named ``test_<row>_...``.

A test reproduces what a careful user did (through the real console script where the finding
was about the CLI) and asserts what must happen now: the input and earlier outputs are intact
(compared by sha256), the error is one line naming what and where, or the bad rows are counted
against a count made independently from the file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from coffea import processor as _coffea_processor
from conftest import TINY_AE_FEATURES

from coffea_ad.inference import ModelContract, OnnxScorer

ort = pytest.importorskip("onnxruntime")
uproot = pytest.importorskip("uproot")
onnx = pytest.importorskip("onnx")


def _cli(*args: str, real: bool = False) -> subprocess.CompletedProcess:
    """Run ``coffea-ad ARGS``: the console script when ``real`` (what a user runs), else the
    same click group in this process through click's runner (no 5 s of imports per call)."""
    if real:
        exe = str(Path(sys.executable).with_name("coffea-ad"))
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300,
                              check=False)
    from click.testing import CliRunner

    from coffea_ad.cli import main

    with warnings.catch_warnings():
        # a user's interpreter shows warnings; the suite's "error" filter would turn coffea's
        # schema warnings into failures that the console script never has
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line_error(res: subprocess.CompletedProcess, *needles: str, code: int = 1) -> None:
    """Exit ``code``, no traceback, the message on one line holding every needle."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _events(path: Path, mode: str = "virtual"):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea\.nanoevents")
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                           mode=mode).events()


def _sqrt_eta_model(path: Path) -> Path:
    """A jet model whose score is sqrt(eta): NaN for every jet with eta < 0 (built with
    onnx.helper, no training), with the tiny AE's feature list."""
    from onnx import TensorProto, helper

    from coffea_ad.inference import InputSpec, OutputSpec

    idx = helper.make_tensor("idx", TensorProto.INT64, [], [0])
    graph = helper.make_graph(
        [helper.make_node("Gather", ["features", "idx"], ["eta"], axis=1),
         helper.make_node("Sqrt", ["eta"], ["score"])],
        "sqrt_eta",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"])],
        initializer=[idx],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    ModelContract(
        name="sqrt_eta", kind="autoencoder", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec("features", list(TINY_AE_FEATURES), [6], scaling="in_graph")],
        outputs=[OutputSpec("score", "score")], score="score",
    ).write(path)
    return path


# ----------------------------------------------------------------------------- models of each kind
@pytest.fixture(scope="module")
def kind_models(tiny_ae_onnx, tmp_path_factory) -> dict[str, Path]:
    """One tiny model per feature path: jet features, constituent list (particle VAE), graph
    (GAE), event variables; exported with the library's own export."""
    torch = pytest.importorskip("torch")
    from coffea_ad.inference import InputSpec, OutputSpec
    from coffea_ad.nn.export import export_onnx
    from coffea_ad.nn.graph_ae import GraphAutoencoder
    from coffea_ad.nn.particle_vae import ParticleVAE

    folder = tmp_path_factory.mktemp("kinds")
    n_part = 8
    feats = ["deta", "dphi", "log_pt"]
    models: dict[str, Path] = {"jet": tiny_ae_onnx}
    example = {"particles": np.zeros((3, n_part, 3), np.float32),
               "mask": np.ones((3, n_part), np.float32)}
    torch.manual_seed(1)
    for kind, module, outputs in (
        ("particle_vae", ParticleVAE(3, n_part, n_out=6, hidden=8, latent=2),
         [OutputSpec("score", "score"), OutputSpec("chamfer", "chamfer"),
          OutputSpec("reconstruction", "reco", [6, 3]), OutputSpec("latent_mean", "mu", [2])]),
        ("graph_ae", GraphAutoencoder(3, n_part, r_c=0.4, hidden=(8,), latent=2),
         [OutputSpec("loss", "score"), OutputSpec("reconstruction", "reco", [n_part, 3])]),
    ):
        contract = ModelContract(
            name=kind, kind=kind, level="jet", jets="FatJet", opset=17,
            inputs=[InputSpec("particles", feats, [n_part, 3], scaling="in_graph",
                              pad_length=n_part, pad_value=0.0),
                    InputSpec("mask", ["mask"], [n_part], pad_length=n_part, pad_value=0.0)],
            outputs=outputs, score=outputs[0].name)
        models[kind] = export_onnx(module, example, folder / f"{kind}.onnx",
                                   output_names=module.output_names, contract=contract)
    event = folder / "event_ae.onnx"
    event.write_bytes(tiny_ae_onnx.read_bytes())
    data = ModelContract.read(tiny_ae_onnx).to_dict()
    data.update(name="event_ae", level="event", jets="FatJet")
    data["inputs"][0].update(features=["mjj", "deta_jj", "dphi_jj", "mt", "met", "dphi_min"],
                             centre=[1500.0, 1.0, 2.0, 1500.0, 200.0, 1.0],
                             scale=[500.0, 1.0, 1.0, 500.0, 100.0, 1.0])
    ModelContract.from_dict(data).write(event)
    models["event"] = event
    return models


@pytest.mark.parametrize("kind", ["jet", "particle_vae", "graph_ae", "event"])
def test_S1_score_cli_uses_the_scorer_feature_path_for_every_model_kind(kind, kind_models,
                                                                         pfnano_file, tmp_path):
    """`coffea-ad score` with a constituent model failed with "unknown jet feature 'deta'"."""
    model = kind_models[kind]
    out = tmp_path / "friend.root"
    res = _cli("score", str(pfnano_file), "--model", str(model), "-o", str(out), "--name", "s",
               "--step-size", "4", "--threads", "1")
    assert res.returncode == 0, res.stderr
    events = _events(pfnano_file, "eager")
    scorer = OnnxScorer(model, intra_op_threads=1)
    with uproot.open(out) as f:
        branch = "FatJet_s" if kind != "event" else "s"
        got = f["Events"][branch].array()
    if kind in ("particle_vae", "graph_ae"):
        # independent of the scorer's plumbing: ONNX Runtime on the particle lists
        from coffea_ad.features import jet_constituents, particle_list

        values, mask = particle_list(jet_constituents(events, jets="FatJet"), events.FatJet,
                                     n=8, features=["deta", "dphi", "log_pt"])
        ref_flat = ort.InferenceSession(str(model)).run(
            [scorer.contract.score], {"particles": np.asarray(values, np.float32),
                                      "mask": np.asarray(mask, np.float32)})[0]
        assert ak.num(got).tolist() == ak.num(events.FatJet).tolist()
        assert len(ref_flat) == 24  # jets of pfnano.root
        np.testing.assert_allclose(ak.flatten(got).to_numpy(), ref_flat, rtol=1e-5, atol=1e-6)
    ref = scorer.score_events(events)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(got, axis=None)),
                               ak.to_numpy(ak.flatten(ref, axis=None)), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- outputs kept
def test_O1_score_output_equal_to_input_is_refused(tiny_ae_onnx, pfnano_file, tmp_path):
    """`score X.root -o X.root` emptied and deleted the input."""
    copy = tmp_path / "in.root"
    copy.write_bytes(pfnano_file.read_bytes())
    before = _sha(copy)
    for spelling in (copy, tmp_path / "." / "in.root"):
        res = _cli("score", str(copy), "--model", str(tiny_ae_onnx), "-o", str(spelling),
                   real=spelling == copy)
        _one_line_error(res, "InputOverwriteError", "is the input file")
    link = tmp_path / "link.root"
    link.symlink_to(copy)
    res = _cli("score", str(copy), "--model", str(tiny_ae_onnx), "-o", str(link),
               "--overwrite")
    _one_line_error(res, "InputOverwriteError")
    assert _sha(copy) == before


def test_O2_score_keeps_an_existing_output_unless_overwrite(tiny_ae_onnx, pfnano_file,
                                                            tmp_path):
    out = tmp_path / "friend.root"
    assert _cli("score", str(pfnano_file), "--model", str(tiny_ae_onnx), "-o", str(out),
                "--threads", "1").returncode == 0
    good = _sha(out)
    res = _cli("score", str(pfnano_file), "--model", str(tiny_ae_onnx), "-o", str(out))
    _one_line_error(res, "OutputExistsError", str(out), "--overwrite")
    assert _sha(out) == good
    res = _cli("score", str(pfnano_file), "--model", str(tiny_ae_onnx), "-o", str(out),
               "--overwrite", "--name", "renamed", "--threads", "1")
    assert res.returncode == 0, res.stderr
    with uproot.open(out) as f:
        assert "FatJet_renamed" in f["Events"]


def test_O3_failed_score_leaves_the_previous_friend_intact(tiny_ae_onnx, pfnano_file, tmp_path):
    """A failure mid-way used to delete the earlier good friend file."""
    out = tmp_path / "friend.root"
    assert _cli("score", str(pfnano_file), "--model", str(tiny_ae_onnx), "-o", str(out),
                "--threads", "1").returncode == 0
    good = _sha(out)
    nan_model = _sqrt_eta_model(tmp_path / "sqrt_eta.onnx")  # fails: NaN scores, "raise"
    res = _cli("score", str(pfnano_file), "--model", str(nan_model), "-o", str(out),
               "--overwrite", "--step-size", "2")
    _one_line_error(res, "NonFiniteScoreError")
    assert _sha(out) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["friend.root", "sqrt_eta.json",
                                                          "sqrt_eta.onnx"]  # no temporaries


def test_O4_features_output_equal_to_input_is_refused(pfnano_file, tmp_path):
    """`features X.root -o X.root` replaced the ROOT input with parquet, exit 0."""
    copy = tmp_path / "in.root"
    copy.write_bytes(pfnano_file.read_bytes())
    before = _sha(copy)
    res = _cli("features", str(copy), "-o", str(copy), "--overwrite")
    _one_line_error(res, "is the input file")
    assert _sha(copy) == before


def test_O5_features_keeps_an_existing_output_unless_overwrite(pfnano_file, tmp_path):
    out = tmp_path / "t.parquet"
    out.write_bytes(b"earlier table")
    res = _cli("features", str(pfnano_file), "-o", str(out), "--features", "eta,phi")
    _one_line_error(res, "already exists", "--overwrite")
    assert out.read_bytes() == b"earlier table"
    res = _cli("features", str(pfnano_file), "-o", str(out), "--features", "eta,phi",
               "--overwrite")
    assert res.returncode == 0, res.stderr
    table = ak.from_parquet(out)
    assert len(table) == 24
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


# ----------------------------------------------------------------------------- non-finite scores
def test_N1_nan_scores_raise_by_default_and_are_counted_under_flag(pfnano_file, tmp_path):
    """A model giving NaN for some jets ran silently; NaN jets counted as untagged."""
    model = _sqrt_eta_model(tmp_path / "sqrt_eta.onnx")
    eta = ak.flatten(_events(pfnano_file, "eager").FatJet.eta).to_numpy()
    n_negative = int((eta < 0).sum())  # the jets sqrt(eta) makes NaN, counted from the file
    assert 0 < n_negative < len(eta)

    res = _cli("score", str(pfnano_file), "--model", str(model), "-o", str(tmp_path / "a.root"),
               real=True)
    _one_line_error(res, "NonFiniteScoreError", "'score'", "--nonfinite flag")
    assert not (tmp_path / "a.root").exists()

    out = tmp_path / "b.root"
    res = _cli("score", str(pfnano_file), "--model", str(model), "-o", str(out),
               "--nonfinite", "flag", "--step-size", "3")
    assert res.returncode == 0, res.stderr
    assert f"{n_negative} rows flagged non-finite" in res.stdout
    with uproot.open(out) as f:
        scores = ak.flatten(f["Events"]["FatJet_sqrt_eta"].array()).to_numpy()
        flags = ak.flatten(f["Events"]["FatJet_sqrt_eta_nonfinite"].array()).to_numpy()
        info = json.loads(str(f["coffea_ad_scores"]))
    np.testing.assert_array_equal(flags, eta < 0)
    np.testing.assert_array_equal(scores[eta < 0], -1.0)
    np.testing.assert_allclose(scores[eta >= 0], np.sqrt(eta[eta >= 0]), rtol=1e-6)
    assert info["nonfinite_rows"] == n_negative

    # the library counts them too, on the scorer's stats
    scorer = OnnxScorer(model, nonfinite="flag")
    scorer.score_events(_events(pfnano_file))
    assert scorer.stats.nonfinite_scores == n_negative
    assert scorer.stats.nonfinite_rows == 0  # the inputs were finite


# ----------------------------------------------------------------------------- generate
@pytest.mark.parametrize(("content", "what"), [
    ("{not json", "cannot be read"),
    ('["a.root"]', "a JSON list"),
    ('{"qcd": {"metadata": {}}}', "has no 'files' mapping or list"),
])
def test_G1_malformed_fileset_json_is_an_error_not_rewritten(content, what, tmp_path):
    """`generate` rewrote a malformed fileset.json, dropping every other dataset, exit 0."""
    out = tmp_path / "samples"
    out.mkdir()
    (out / "fileset.json").write_text(content)
    res = _cli("generate", "qcd", "-n", "10", "-s", "1", "-o", str(out), "--no-progress")
    _one_line_error(res, "FilesetError", str(out / "fileset.json"), what, "not overwritten")
    assert (out / "fileset.json").read_text() == content
    assert sorted(p.name for p in out.iterdir()) == ["fileset.json"]  # nothing generated


def test_G2_second_generate_into_a_busy_folder_is_refused(tmp_path):
    """Two runs at once left a ROOT file without provenance while fileset.json listed it:
    the folder lock lets one run write, the other is told who holds it."""
    import os

    from coffea_ad.samples.generate import LOCK_NAME, folder_lock

    out = tmp_path / "samples"
    with folder_lock(out):  # what the first run holds for its whole generation
        assert (out / LOCK_NAME).read_text() == str(os.getpid())
        res = _cli("generate", "qcd", "-n", "10", "-s", "1", "-o", str(out), "--no-progress",
                   real=True)  # another process, as a second user's run would be
        _one_line_error(res, "FolderBusyError", f"pid {os.getpid()}", str(out))
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    with folder_lock(out):  # released: the next run gets it
        pass


def test_G3_negative_seed_is_a_usage_error(tmp_path):
    res = _cli("generate", "qcd", "-n", "10", "-s", "-3", "-o", str(tmp_path / "s"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "-3 is not in the range x>=0" in res.stderr
    from coffea_ad.samples import generate

    with pytest.raises(ValueError, match="seed must be an integer >= 0, found -3"):
        generate("qcd", events=10, seed=-3, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- train, inspect, --set
def test_T1_train_errors_are_one_line(tmp_path, tiny_ae_onnx):
    fileset = tmp_path / "fs.json"
    fileset.write_text("{}")
    res = _cli("train", "nosuch", "--fileset", str(fileset), "--out", str(tmp_path / "m"))
    _one_line_error(res, "UnknownNameError", "'nosuch'", "dense_ae")
    res = _cli("train", "dense_ae", "--fileset", str(fileset), "--out", str(tmp_path / "m"),
               "--set", "epochz=3")
    _one_line_error(res, "'epochz'", "epochs")
    # an existing model is kept unless --overwrite
    model = tmp_path / "old.onnx"
    model.write_bytes(tiny_ae_onnx.read_bytes())
    res = _cli("train", "dense_ae", "--fileset", str(fileset), "--out", str(tmp_path / "old"))
    _one_line_error(res, "OutputExistsError", str(model))
    assert model.read_bytes() == tiny_ae_onnx.read_bytes()


def test_T2_debug_shows_the_traceback(tmp_path):
    fileset = tmp_path / "fs.json"
    fileset.write_text("{}")
    res = _cli("--debug", "train", "nosuch", "--fileset", str(fileset), "--out",
               str(tmp_path / "m"), real=True)
    assert res.returncode == 1
    assert "Traceback" in res.stderr
    assert "UnknownNameError" in res.stderr


def test_I1_inspect_refuses_an_unknown_feature_name(tiny_ae_onnx, tmp_path):
    """`inspect` accepted a contract with a feature that `run` rejected on its first chunk."""
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_ae_onnx.read_bytes())
    data = ModelContract.read(tiny_ae_onnx).to_dict()
    data["inputs"][0]["features"] = [*TINY_AE_FEATURES[:5], "axis_minr"]
    ModelContract.from_dict(data).write(path)
    res = _cli("inspect", str(path))
    _one_line_error(res, "ModelContractError", "'axis_minr'", "axis_minor")
    assert _cli("inspect", str(tiny_ae_onnx)).returncode == 0


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_R1_non_finite_threshold_is_a_usage_error(value):
    """`--set tag_threshold=nan` ran and tagged nothing, exit 0."""
    import click

    from coffea_ad.cli import parse_settings

    with pytest.raises(click.BadParameter, match=f"tag_threshold={value}: expected a finite"):
        parse_settings((f"tag_threshold={value}",))
    assert parse_settings(("tag_threshold=0.25", "n=3")) == {"tag_threshold": 0.25, "n": 3}


# ----------------------------------------------------------------------------- coffea-ad run
SVJ_MODEL = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"


def _corrupt_copy(src: Path, dst: Path) -> Path:
    """``src`` with the first FatJet_pt basket's key overwritten: the file opens (10 entries)
    but reading that branch raises uproot's DeserializationError, an unreadable chunk."""
    data = bytearray(src.read_bytes())
    with uproot.open(src) as f:
        seek = int(f["Events"]["FatJet_pt"].member("fBasketSeek")[0])
    data[seek:seek + 16] = b"\xff" * 16
    dst.write_bytes(bytes(data))
    with uproot.open(dst) as f:
        assert f["Events"].num_entries == 10
    return dst


def _fileset(tmp_path: Path, files: dict[str, list[Path]], name: str = "fs.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({ds: {"files": {str(f): "Events" for f in fs}}
                                for ds, fs in files.items()}))
    return path


def _run(fileset: Path, out: Path, *extra: str, real: bool = False):
    return _cli("run", "svj", "--fileset", str(fileset), "--model", str(SVJ_MODEL),
                "--executor", "iterative", "--no-progress", "--set", "tag_threshold=0.5",
                "-o", str(out), *extra, real=real)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--chunksize", "-5", "-5 is not in the range x>=1"),
    ("--chunksize", "0", "0 is not in the range x>=1"),
    ("--maxchunks", "0", "0 is not in the range x>=1"),
    ("--threads", "0", "0 is not in the range x>=1"),
    ("--workers", "-3", "-3 is not in the range x>=1"),
    ("--workers", "0", "0 is not in the range x>=1"),
    ("--retries", "-1", "-1 is not in the range x>=0"),
])
def test_R1_out_of_range_options_are_usage_errors(option, value, expected, pfnano_file,
                                                  tmp_path):
    """`--chunksize -5`, `--threads 0`, `--workers -3` were accepted; `--workers 0` with dask
    waited forever."""
    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    res = _cli("run", "svj", "--fileset", str(fs), "--model", str(SVJ_MODEL), "-o",
               str(tmp_path / "out"), "--set", "tag_threshold=0.5", option, value)
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--resources", "GPU=1"], "--resources GPU=1: no worker of the new LocalCluster has it"),
    (["--resources", "GPU=2", "--worker-resources", "GPU=1"], "expected --worker-resources GPU=2"),
    (["--executor", "dask-awkward", "--checkpoint", "CK"], ("--checkpoint is not supported by "
     "--executor dask-awkward")),
    (["--executor", "dask-awkward", "--maxchunks", "1"], "--maxchunks is not supported"),
    (["--executor", "dask-awkward", "--retries", "1"], "--retries is not supported"),
    (["--executor", "dask-awkward", "--resources", "GPU=1", "--worker-resources", "GPU=1"],
     "--resources is not supported"),
    (["--executor", "iterative", "--resources", "GPU=1"], ("--resources applies to --executor "
     "dask")),
    (["--scheduler", "tcp://127.0.0.1:1"], ("cannot reach the Dask scheduler at "
     "tcp://127.0.0.1:1 within 5 s")),
    (["--scheduler", "tcp://127.0.0.1:1", "--worker-resources", "GPU=1"],
     "--worker-resources configures a new LocalCluster"),
    (["--set", "tag_threshold=nan"], "tag_threshold=nan: expected a finite number"),
])
def test_R2_impossible_option_combinations_are_refused_at_once(args, expected, pfnano_file,
                                                               tmp_path):
    """`--resources GPU=1` on a LocalCluster without worker resources waited forever, an
    unreachable scheduler hung or ended in a traceback, dask-awkward ignored --checkpoint,
    --maxchunks, --retries and --resources without a word."""
    import time

    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    t0 = time.perf_counter()
    res = _cli("run", "svj", "--fileset", str(fs), "--model", str(SVJ_MODEL), "-o",
               str(tmp_path / "out"), "--set", "tag_threshold=0.5", *args)
    assert time.perf_counter() - t0 < 20  # never a hang (the scheduler probe waits 5 s)
    assert res.returncode == 2, res.stderr
    assert expected in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "expected"), [
    ("{oops", "cannot be read"),
    ('["a.root", "b.root"]', "holds a JSON list"),
    ('{"pf": {"metadata": {"xsec": 1}}}', "dataset 'pf' has no 'files' mapping or list"),
])
def test_R3_malformed_fileset_is_a_usage_error(content, expected, tmp_path):
    fs = tmp_path / "fs.json"
    fs.write_text(content)
    res = _cli("run", "svj", "--fileset", str(fs), "--model", str(SVJ_MODEL), "-o",
               str(tmp_path / "out"), "--set", "tag_threshold=0.5")
    assert res.returncode == 2
    assert expected in res.stderr
    assert "Traceback" not in res.stderr


def test_R4_unknown_processor_is_a_usage_error(pfnano_file, tmp_path):
    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    res = _cli("run", "svjj", "--fileset", str(fs), "--model", str(SVJ_MODEL), "-o",
               str(tmp_path / "out"))
    assert res.returncode == 2
    assert "unknown processor 'svjj'" in res.stderr
    assert "svj" in res.stderr


def test_R5_run_directory_is_one_set_kept_unless_overwrite(pfnano_file, tmp_path):
    """`run -o DIR` silently overwrote an earlier run; a failed run replaced only run.json and
    `report` read the mix."""
    from coffea_ad.errors import InvalidOutputError
    from coffea_ad.rundir import read_run_dir

    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    out = tmp_path / "out"
    res = _run(fs, out)
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    assert set(info["outputs"]) == {"histograms.json", "histograms.root", "cutflow.json",
                                    "histograms.coffea"}
    for name, digest in info["outputs"].items():  # the hashes are those of the files beside
        assert _sha(out / name) == digest
    before = {p.name: _sha(p) for p in out.iterdir()}

    res = _run(fs, out)  # a second run into the same folder
    assert res.returncode == 2
    assert "already exists" in res.stderr
    assert "--overwrite" in res.stderr
    assert {p.name: _sha(p) for p in out.iterdir()} == before

    # the set reads back without unpickling, equal to the pickled output
    from coffea.util import load

    result, back = read_run_dir(out)
    pickled = load(out / "histograms.coffea")
    for name, h in pickled["hists"].items():
        assert result["hists"][name] == h, name
    assert result["cutflow"] == pickled["cutflow"]
    assert back["entries_processed"] == 10

    # a file of another run put beside the others: refused, naming it
    other = tmp_path / "other"
    assert _run(fs, other, "--set", "tag_threshold=0.1").returncode == 0
    (out / "cutflow.json").write_bytes((other / "cutflow.json").read_bytes())
    if _sha(out / "cutflow.json") != before["cutflow.json"]:
        with pytest.raises(InvalidOutputError, match=r"cutflow.json differs from the file"):
            read_run_dir(out)
    (out / "histograms.json").write_bytes((other / "histograms.json").read_bytes())
    with pytest.raises(InvalidOutputError, match=r"histograms.json differs from the file"):
        read_run_dir(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_R6_unreadable_chunk_fails_with_one_line_and_a_run_record(pfnano_file, tmp_path):
    """A chunk-read error without --skip-bad-files printed 160-550 lines and no run.json."""
    from coffea_ad.errors import InvalidOutputError
    from coffea_ad.rundir import read_run_dir

    bad = _corrupt_copy(pfnano_file, tmp_path / "corrupt.root")
    fs = _fileset(tmp_path, {"pf": [pfnano_file, bad]})
    out = tmp_path / "out"
    res = _run(fs, out, real=True)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 4, res.stderr
    assert "corrupt.root" in res.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed"
    assert "corrupt.root" in record["error"]
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]
    with pytest.raises(InvalidOutputError, match="records a failed run"):
        read_run_dir(out)

    # with --skip-bad-files the chunk is skipped and the shortfall recorded
    res = _run(fs, tmp_path / "skip", "--skip-bad-files")
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "skip" / "run.json").read_text())
    assert info["entries"] == 20
    assert info["entries_processed"] == 10
    assert not info["complete"]


def test_R7_one_file_under_three_paths_is_counted_once(pfnano_file, tmp_path):
    """The same file listed under three paths was counted three times as complete."""
    link = tmp_path / "link.root"
    link.symlink_to(pfnano_file)
    dotted = pfnano_file.parent / ".." / pfnano_file.parent.name / pfnano_file.name
    fs = _fileset(tmp_path, {"pf": [pfnano_file, link, dotted]})
    res = _run(fs, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("is the same file as") == 2
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["entries"] == info["entries_processed"] == 10  # pfnano.root holds 10
    assert len(info["files"]) == 1
    assert len(info["duplicate_files_dropped"]) == 2


class _Payload:
    """Unpickling this creates a file: the proof that a loader ran code from the file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_P1_report_reads_no_pickle_and_refuses_a_mixed_or_failed_set(pfnano_file, tmp_path):
    """`report DIR` unpickled histograms.coffea (a crafted file ran code) and reported a mix of
    two runs with exit 0."""
    import pickle

    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    out = tmp_path / "out"
    assert _run(fs, out).returncode == 0
    rep = _cli("report", str(out), "--background", "pf", "--no-plots", "-o", str(tmp_path / "r1"))
    assert rep.returncode == 0, rep.stderr
    first = (tmp_path / "r1" / "report.md").read_text()

    # a crafted pickle, with run.json updated to match it: report never loads it
    marker = tmp_path / "pwned"
    (out / "histograms.coffea").write_bytes(pickle.dumps(_Payload(str(marker))))
    record = json.loads((out / "run.json").read_text())
    record["outputs"]["histograms.coffea"] = _sha(out / "histograms.coffea")
    (out / "run.json").write_text(json.dumps(record))
    rep = _cli("report", str(out), "--background", "pf", "--no-plots", "-o", str(tmp_path / "r2"))
    assert rep.returncode == 0, rep.stderr
    assert not marker.exists()
    assert (tmp_path / "r2" / "report.md").read_text() == first

    # a histogram file of another run beside this run.json: refused, naming the file
    other = tmp_path / "other"
    assert _run(fs, other, "--set", "tag_threshold=0.1").returncode == 0
    (out / "histograms.json").write_bytes((other / "histograms.json").read_bytes())
    rep = _cli("report", str(out), "--background", "pf", "--no-plots", "-o", str(tmp_path / "r3"))
    _one_line_error(rep, "histograms.json differs from the file this run wrote")
    assert not (tmp_path / "r3").exists()

    # a failed run's record: refused
    bad = _corrupt_copy(pfnano_file, tmp_path / "corrupt.root")
    failed = tmp_path / "failed"
    assert _run(_fileset(tmp_path, {"pf": [bad]}, "bad.json"), failed).returncode == 1
    rep = _cli("report", str(failed), "--background", "pf", "--no-plots")
    _one_line_error(rep, "records a failed run")


# ----------------------------------------------------------------------------- checkpoints
def test_F1_checkpoint_fingerprint_covers_contract_settings_and_versions(pfnano_file, tmp_path,
                                                                         monkeypatch):
    """Editing a model's sidecar contract and rerunning with the same --checkpoint reused
    every old chunk: the fingerprint hashed only the .onnx."""
    from coffea_ad import execution
    from coffea_ad.processors import get_processor

    model = tmp_path / "m.onnx"
    model.write_bytes(SVJ_MODEL.read_bytes())
    sidecar = SVJ_MODEL.with_suffix(".json")
    (tmp_path / "m.json").write_text(sidecar.read_text())
    fs = _fileset(tmp_path, {"pf": [pfnano_file]})
    ckpt = tmp_path / "ckpt"

    def run(out: str, *extra: str) -> dict:
        res = _cli("run", "svj", "--fileset", str(fs), "--model", str(model), "--executor",
                   "iterative", "--no-progress", "--checkpoint", str(ckpt), "-o",
                   str(tmp_path / out), "--set", "tag_threshold=0.5", *extra)
        assert res.returncode == 0, res.stderr
        return json.loads((tmp_path / out / "run.json").read_text())

    assert run("a")["chunks_from_checkpoint"] == 0
    assert run("b")["chunks_from_checkpoint"] == 1  # same everything: resumed
    data = json.loads((tmp_path / "m.json").read_text())
    spec = data["inputs"][0]
    order = [1, 0, *range(2, len(spec["features"]))]  # swap the first two features
    for key in ("features", "centre", "scale"):
        if spec.get(key):
            spec[key] = [spec[key][i] for i in order]
    (tmp_path / "m.json").write_text(json.dumps(data))
    info = run("c")
    assert info["chunks_from_checkpoint"] == 0  # a new contract: recomputed
    assert info["contracts"] == {str(model.resolve()): _sha(tmp_path / "m.json")}
    assert run("d", "--set", "tag_threshold=0.25")["chunks_from_checkpoint"] == 0

    # scorer settings and package versions are in the fingerprint too
    proc = get_processor("svj")(str(model), tag_threshold=0.5)
    fp = execution.processor_fingerprint(proc)
    assert fp["contracts"] == info["contracts"]
    assert fp["scorers"][str(model.resolve())]["nonfinite"] == "raise"
    flagged = execution.processor_fingerprint(
        get_processor("svj")(str(model), tag_threshold=0.5,
                             scorer_options={"nonfinite": "flag"}))
    assert flagged["scorers"] != fp["scorers"]
    monkeypatch.setattr(execution.provenance, "_versions", lambda: {"coffea-ad": "99.0"})
    assert execution.processor_fingerprint(proc)["versions"] == {"coffea-ad": "99.0"}


def test_N2_run_with_nan_scores_fails_by_default_and_counts_them_under_flag(pfnano_file,
                                                                          tmp_path):
    """`run` with a model giving NaN for some jets ended with exit 0: NaN jets counted as
    untagged and landed in no bin."""
    model = _sqrt_eta_model(tmp_path / "sqrt_eta.onnx")
    jets = _events(pfnano_file, "eager").FatJet
    # the processor scores the jets its histograms use: the two leading jets with p_T > 200
    # and |eta| < 2.4 (its defaults) of each event that has two; sqrt(eta < 0) is NaN
    n_negative = 0
    for pt, eta in zip(jets.pt.tolist(), jets.eta.tolist(), strict=True):
        good = [e for p, e in zip(pt, eta, strict=True) if p > 200 and abs(e) < 2.4]
        if len(good) >= 2:
            n_negative += sum(e < 0 for e in good[:2])
    assert 0 < n_negative < int(ak.sum(jets.eta < 0))  # some NaN jets used, some not
    fs = _fileset(tmp_path, {"pf": [pfnano_file]})

    def run(out: str, *extra: str):
        return _cli("run", "svj", "--fileset", str(fs), "--model", str(model), "--executor",
                    "iterative", "--no-progress", "--set", "tag_threshold=0.5", "-o",
                    str(tmp_path / out), *extra)

    res = run("a")
    _one_line_error(res, "NonFiniteScoreError", "'score'")
    assert json.loads((tmp_path / "a" / "run.json").read_text())["status"] == "failed"

    res = run("b", "--nonfinite", "flag")
    assert res.returncode == 0, res.stderr
    assert f"'pf': {n_negative}" in res.stderr
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert info["nonfinite_scores"] == {"pf": n_negative}
    assert json.loads((tmp_path / "b" / "cutflow.json").read_text())["nonfinite_scores"] == {
        "pf": n_negative}

    res = run("c", "--nonfinite", "flag", "--executor", "dask-awkward")
    assert res.returncode == 2
    assert "--executor dask-awkward needs --nonfinite raise" in res.stderr


# ----------------------------------------------------------------------------- dask-awkward
@pytest.mark.slow  # a LocalCluster and two dask-awkward runs: ~1-2 min on 2 cores
def test_D1_dask_awkward_counts_partitions_and_skips_an_unreadable_chunk(pfnano_file,
                                                                        tmp_path):
    """On the dask-awkward path --skip-bad-files crashed on an unreadable chunk and
    entries_processed came from the plan, so it could never show a shortfall."""
    bad = _corrupt_copy(pfnano_file, tmp_path / "corrupt.root")
    fs = _fileset(tmp_path, {"pf": [pfnano_file, bad]})
    common = ("run", "svj", "--fileset", str(fs), "--model", str(SVJ_MODEL), "--executor",
              "dask-awkward", "--workers", "1", "--chunksize", "5", "--no-progress", "--set",
              "tag_threshold=0.5")
    res = _cli(*common, "-o", str(tmp_path / "skip"), "--skip-bad-files")
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "skip" / "run.json").read_text())
    per_file = {Path(f["file"]).name: f for f in info["files"]}
    assert per_file["pfnano.root"]["entries_processed"] == 10
    assert per_file["corrupt.root"]["entries_processed"] == 0  # counted, not planned
    assert [(c["entrystart"], c["entrystop"]) for c in per_file["corrupt.root"]
            ["skipped_chunks"]] == [(0, 5), (5, 10)]
    assert info["entries"] == 20
    assert info["entries_processed"] == 10
    assert not info["complete"]
    assert json.loads((tmp_path / "skip" / "cutflow.json").read_text())["cutflow"]["pf"][
        "all"] == 10

    res = _cli(*common, "-o", str(tmp_path / "noskip"))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    # the headline, then one line per unreadable chunk (as on the Runner executors)
    assert "2 chunk(s) could not be read" in res.stderr.splitlines()[0]
    assert res.stderr.count("corrupt.root (dataset pf) entries") == 2
    assert json.loads((tmp_path / "noskip" / "run.json").read_text())["status"] == "failed"


# ----------------------------------------------------------------------------- futures
class _DiesInSecondChunk(_coffea_processor.ProcessorABC):
    """A coffea processor whose worker process dies (as when killed or out of memory) on the
    chunk starting at entry 5; module level so the pool can unpickle it."""

    def process(self, events):
        import os

        if events.metadata["entrystart"] == 5:
            os._exit(9)
        return {"n": len(events)}

    def postprocess(self, accumulator):
        return accumulator


def test_K1_futures_worker_killed_gives_a_clear_error_and_a_record(pfnano_file, tmp_path):
    """`--executor futures` with a killed pool worker: TerminatedWorkerError and no output."""
    from coffea_ad.execution import IncompleteRunError, run_processor

    fs = {"pf": {"files": {str(pfnano_file): "Events"}}}
    with pytest.raises(IncompleteRunError, match=r"a worker process of the futures executor "
                       r"died mid-run .*rerun, with --checkpoint") as info:
        run_processor(fs, _DiesInSecondChunk(), executor="futures", workers=2, chunksize=5, retries=0)
    record = info.value.run_info
    assert record["chunks"] == 2
    assert [f["entries"] for f in record["files"]] == [10]
    assert "BrokenProcessPool" in record["error"] or "Terminated" in record["error"]
