"""OnnxScorer on numpy and awkward inputs: values, structure, contract checks, NaN policy.

References are independent of the scorer: a direct ``onnxruntime`` session fed inputs scaled
by the hand formula ``(x - centre) / scale`` in float64, the torch module the ONNX file was
exported from, and per-event Python loops that rebuild jagged structure by hand.
"""

from __future__ import annotations

import functools
import operator
import pickle
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from conftest import TINY_AE_CENTRE, TINY_AE_FEATURES, TINY_AE_SCALE, build_tiny_ae

from coffea_ad.errors import ModelContractError, ModelFileError, NonFiniteInputError
from coffea_ad.inference import (
    FLAG_VALUE,
    NONFINITE_MASK,
    InputSpec,
    ModelContract,
    OnnxScorer,
    OutputSpec,
    release_sessions,
    select_providers,
    session_creations,
)

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- helpers
def raw_features(n: int, seed: int = 1) -> np.ndarray:
    """[n, 6] float32 jet features drawn around the contract centre."""
    rng = np.random.default_rng(seed)
    x = np.asarray(TINY_AE_CENTRE) + rng.normal(size=(n, 6)) * np.asarray(TINY_AE_SCALE)
    return x.astype(np.float32)


def direct_ort(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Reference: a fresh session fed (x - centre) / scale computed in float64."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scaled = ((x.astype(np.float64) - TINY_AE_CENTRE) / TINY_AE_SCALE).astype(np.float32)
    loss, reco = sess.run(["loss", "reconstruction"], {"features": scaled})
    return {"loss": loss, "reconstruction": reco}


def jets_record(x: np.ndarray, counts: list[int], *, extra: bool = True) -> ak.Array:
    """events * jets * {features} from rows of x; an extra 'pt' field the model must ignore."""
    counts = np.asarray(counts, dtype=np.int64)
    fields = {f: ak.unflatten(x[:, j], counts) for j, f in enumerate(TINY_AE_FEATURES)}
    if extra:
        fields["pt"] = ak.unflatten(np.arange(len(x), dtype=np.float32), counts)
    return ak.zip(fields)


def loop_unflatten(values: np.ndarray, counts: list[int]) -> list[list[float]]:
    out, i = [], 0
    for c in counts:  # slow reference: one event at a time
        out.append([float(v) for v in values[i : i + c]])
        i += c
    return out


def write_variant(src: Path, dst_dir: Path, **changes) -> Path:
    """Copy the tiny model with an edited contract (for mismatch tests)."""
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    data = ModelContract.read(src).to_dict()
    for key, value in changes.items():
        if key.startswith("input0_"):
            data["inputs"][0][key[len("input0_") :]] = value
        else:
            data[key] = value
    ModelContract.from_dict(data).write(dst)
    return dst


@pytest.fixture
def scorer(tiny_ae_onnx: Path) -> OnnxScorer:
    return OnnxScorer(tiny_ae_onnx, intra_op_threads=1)


# ----------------------------------------------------------------------------- values
def test_numpy_scores_equal_direct_onnxruntime_and_torch(scorer, tiny_ae_onnx):
    x = raw_features(1000)
    ref = direct_ort(tiny_ae_onnx, x)
    got = scorer(x)
    assert got.dtype == np.float32
    assert got.shape == (1000,)
    np.testing.assert_allclose(got, ref["loss"], rtol=1e-5, atol=1e-6)
    outs = scorer.outputs(x)
    np.testing.assert_allclose(outs["reconstruction"], ref["reconstruction"], rtol=1e-5, atol=1e-6)
    # and the torch module the file was exported from (seed 0 in the fixture)
    scaled = (x.astype(np.float64) - TINY_AE_CENTRE) / TINY_AE_SCALE
    with torch.no_grad():
        loss, _ = build_tiny_ae(0)(torch.from_numpy(scaled.astype(np.float32)))
    np.testing.assert_allclose(got, loss.numpy(), rtol=1e-5, atol=1e-6)
    assert scorer.provider == "CPUExecutionProvider"


def test_caller_array_is_not_modified(scorer):
    x = raw_features(50)
    before = x.copy()
    scorer(x)
    np.testing.assert_array_equal(x, before)


def test_float64_numpy_input_is_cast_like_the_contract(scorer, tiny_ae_onnx):
    x = raw_features(20)
    np.testing.assert_allclose(scorer(x.astype(np.float64)), scorer(x), rtol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 100, 1000])
def test_batching_does_not_change_scores(tiny_ae_onnx, batch_size):
    x = raw_features(100)
    ref = direct_ort(tiny_ae_onnx, x)["loss"]
    s = OnnxScorer(tiny_ae_onnx, batch_size=batch_size, intra_op_threads=1)
    outs = s.outputs(x)
    np.testing.assert_allclose(outs["loss"], ref, rtol=1e-5, atol=1e-6)
    assert outs["reconstruction"].shape == (100, 6)
    assert s.stats.batches == -(-100 // batch_size)
    assert s.stats.rows == 100
    assert s.stats.calls == 1


def test_default_batch_size_feeds_about_256_kb_per_call(tiny_ae_onnx):
    # the tiny AE takes 6 float32 per row: 24 B; 262144 / 24 = 10922 rows -> 8192 (2**13)
    s = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    assert s.batch_size == 8192
    x = raw_features(20000)
    np.testing.assert_allclose(s(x), direct_ort(tiny_ae_onnx, x)["loss"], rtol=1e-5, atol=1e-6)
    assert s.stats.batches == 3  # 8192 + 8192 + 3616 rows


def test_auto_batch_size_of_a_padded_constituent_contract():
    from coffea_ad.inference import auto_batch_size

    # 50 constituents x 7 float32 + a 50-float mask = 1600 B per jet: 262144 / 1600 = 163
    # jets -> 128; a huge row is clamped to 16, a tiny one to 65536
    contract = ModelContract(
        name="g", kind="graph_autoencoder", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec("particles", list("abcdefg"), [50, 7], pad_length=50),
                InputSpec("mask", ["mask"], [50], pad_length=50)],
        outputs=[OutputSpec("loss", "score")], score="loss")
    assert auto_batch_size(contract) == 128
    big = ModelContract(name="b", kind="autoencoder", level="jet", jets="FatJet", opset=17,
                        inputs=[InputSpec("x", ["x"], [100_000])],
                        outputs=[OutputSpec("loss", "score")], score="loss")
    assert auto_batch_size(big) == 16
    tiny = ModelContract(name="t", kind="autoencoder", level="jet", jets="FatJet", opset=17,
                         inputs=[InputSpec("x", ["x"], [1])],
                         outputs=[OutputSpec("loss", "score")], score="loss")
    assert auto_batch_size(tiny) == 65536
    # a [batch, 50, 50] float32 intermediate (10 kB per jet): 524288 / 10000 = 52 -> 32
    assert auto_batch_size(contract, 10_000) == 32
    assert auto_batch_size(tiny, 40) == 8192  # 524288 / 40 = 13107 -> 8192
    assert auto_batch_size(contract, None) == 128
    # a derived [50, 50] float32 adjacency (10 kB per jet) has its own budget: 2 MiB / 10000
    # = 209 -> 128 leaves the input rule's 128; on 100 constituents (40 kB): 52 -> 32
    def graph(n):
        return ModelContract(
            name="g", kind="graph_autoencoder", level="jet", jets="FatJet", opset=17,
            inputs=[InputSpec("particles", ["eta", "phi"], [n, 2], pad_length=n),
                    InputSpec("mask", ["mask"], [n], pad_length=n),
                    InputSpec("adjacency", ["adjacency"], [n, n], pad_length=n,
                              graph={"kind": "normalized_adjacency", "of": "particles",
                                     "eta": "eta", "phi": "phi", "r_c": 0.1,
                                     "adjacency": "hard", "periodic_phi": False})],
            outputs=[OutputSpec("loss", "score")], score="loss")
    # inputs 50 x 3 x 4 = 600 B per jet: 262144 / 600 = 436 -> 256; the adjacency caps it
    assert auto_batch_size(graph(50)) == 128
    assert auto_batch_size(graph(100)) == 32
    assert auto_batch_size(graph(100), 1400) == 32


@pytest.mark.parametrize(("model", "row_bytes", "batch"),
                         [("svj_gae", 50 * 7 * 4, 128), ("svj_dense_ae", 10 * 4, 8192)])
def test_largest_intermediate_per_row_from_shape_inference(model, row_bytes, batch):
    """The graph AE's largest tensor inside the graph is a [batch, 50, 7] float32 node
    array; its inputs (1600 B per jet) and its [batch, 50, 50] adjacency input, derived per
    batch (10 kB per jet against 2 MiB), both give 128; the dense AE's is its widest hidden
    layer (10 float32)."""
    from coffea_ad.inference import OnnxScorer, graph_signature

    path = Path(__file__).resolve().parents[1] / "models" / f"{model}.onnx"
    assert graph_signature(path)["row_bytes"] == row_bytes
    assert OnnxScorer(path).batch_size == batch


def test_gpu_batch_size_rule():
    from coffea_ad.inference import auto_batch_size

    def contract(*inputs):
        return ModelContract(name="c", kind="autoencoder", level="jet", jets="FatJet",
                             opset=17, inputs=list(inputs), outputs=[OutputSpec("loss", "score")],
                             score="loss")

    six = contract(InputSpec("x", list("abcdef"), [6]))
    # 64 MiB / 24 B = 2796202 rows -> 2**21, also the cap (a 4 B row would give 16.7 M)
    assert auto_batch_size(six, gpu=True) == 1 << 21
    assert auto_batch_size(contract(InputSpec("x", ["x"], [1])), gpu=True) == 1 << 21
    # a 40 B widest layer leaves it: 256 MiB / 40 = 6.7 M
    assert auto_batch_size(six, 40, gpu=True) == 1 << 21
    # 400 kB rows: 67108864 / 400000 = 167 -> 128; an intermediate of 1 GB per row -> 16
    assert auto_batch_size(contract(InputSpec("x", ["x"], [100_000])), gpu=True) == 128
    assert auto_batch_size(six, 10**9, gpu=True) == 16
    # the graph AE: 1600 B in (41943 rows), a 10 kB adjacency derived on the host:
    # 32 MiB / 10000 = 3355 -> 2048 (its device intermediate alone would allow 26843)
    gae = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"
    assert OnnxScorer(gae).gpu_batch_size == 2048
    assert OnnxScorer(gae, batch_size=100).gpu_batch_size == 100  # the user's size wins


class _ReportsGpu:
    """Mock of a CUDA session (no GPU on CI machines): the real CPU session does the
    arithmetic, only the provider it reports is the CUDA one's."""

    def __init__(self, session):
        self.session = session

    def __getattr__(self, name):
        return getattr(self.session, name)

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_gpu_session_runs_the_gpu_batch(tiny_ae_onnx):
    x = raw_features(20000)
    ref = direct_ort(tiny_ae_onnx, x)["loss"]
    cpu = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    np.testing.assert_allclose(cpu(x), ref, rtol=1e-5, atol=1e-6)
    assert cpu.stats.batches == 3  # 8192 + 8192 + 3616
    gpu = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    gpu._session = _ReportsGpu(gpu.session)
    np.testing.assert_allclose(gpu(x), ref, rtol=1e-5, atol=1e-6)
    assert gpu.stats.batches == 1  # 20000 <= 2**21

    # the graph AE: its adjacency is derived per batch, 2048 jets a batch on the GPU
    gae = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 51, 5000)
    mask = (np.arange(50)[None, :] < counts[:, None]).astype(np.float32)
    parts = (rng.normal(size=(5000, 50, 7)) * 0.2).astype(np.float32) * mask[..., None]
    feeds = {"particles": parts, "mask": mask}
    ref_scorer = OnnxScorer(gae, intra_op_threads=1)
    ref = ref_scorer(feeds)
    assert ref_scorer.stats.batches == -(-5000 // 128)
    s = OnnxScorer(gae, intra_op_threads=1)
    s._session = _ReportsGpu(s.session)
    np.testing.assert_allclose(s(feeds), ref, rtol=1e-5)
    assert s.stats.batches == 3  # 2048 + 2048 + 904


def test_score_call_asks_onnx_runtime_for_the_score_only(tiny_ae_onnx):
    # the reconstruction output is neither fetched nor copied when only the score is wanted
    s = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    asked: list = []
    session = s.session
    real_run = session.run

    class Spy:
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, names, feeds):
            asked.append(list(names))
            return real_run(names, feeds)

    s._session = Spy()
    x = raw_features(30)
    got = s(x)
    assert asked == [["loss"]]
    np.testing.assert_allclose(got, direct_ort(tiny_ae_onnx, x)["loss"], rtol=1e-5, atol=1e-6)
    assert set(s.outputs(x)) == {"loss", "reconstruction"}
    assert asked[-1] == ["loss", "reconstruction"]


def test_jagged_scores_keep_events_by_jets_structure(scorer, tiny_ae_onnx):
    counts = [3, 0, 1, 5, 0, 2]
    x = raw_features(sum(counts))
    jets = jets_record(x, counts)
    got = scorer(jets)
    assert str(got.type) == f"{len(counts)} * var * float32"
    ref = loop_unflatten(direct_ort(tiny_ae_onnx, x)["loss"], counts)
    assert ak.num(got).tolist() == counts
    np.testing.assert_allclose(ak.flatten(got).to_numpy(), np.concatenate([r for r in ref if r]),
                               rtol=1e-5, atol=1e-6)
    reco = scorer.outputs(jets)["reconstruction"]
    assert str(reco.type) == f"{len(counts)} * var * 6 * float32"


def test_sliced_masked_and_deeper_inputs(scorer, tiny_ae_onnx):
    counts = [3, 0, 1, 5, 2]
    x = raw_features(sum(counts))
    loss = direct_ort(tiny_ae_onnx, x)["loss"]
    jets = jets_record(x, counts)
    ref = loop_unflatten(loss, counts)
    # a non-packed view: every other event, jets reversed
    view = jets[::2, ::-1]
    expect = [list(reversed(ref[i])) for i in range(0, len(counts), 2)]
    got = scorer(view).tolist()
    assert [len(e) for e in got] == [len(e) for e in expect]
    np.testing.assert_allclose(functools.reduce(operator.iadd, got, []), functools.reduce(operator.iadd, expect, []), rtol=1e-5)
    # a range of events: offsets that do not start at 0
    got = scorer(jets[2:]).tolist()
    assert [len(e) for e in got] == counts[2:]
    np.testing.assert_allclose(functools.reduce(operator.iadd, got, []), functools.reduce(operator.iadd, ref[2:], []), rtol=1e-5)
    # regular jets (e.g. the two leading jets after a selection)
    two = jets_record(x[:8], [2, 2, 2, 2])
    got = scorer(ak.to_regular(two, axis=1))
    assert str(got.type) == "4 * 2 * float32"
    np.testing.assert_allclose(ak.flatten(got).to_numpy(), direct_ort(tiny_ae_onnx, x[:8])["loss"],
                               rtol=1e-5)
    # option-type jets (None entries stay None, no score invented for them)
    masked = ak.mask(jets, ak.unflatten(np.arange(len(x)) % 2 == 0, counts))
    got = scorer(masked).tolist()
    offsets = np.cumsum([0, *counts])
    for e, (ev_got, ev_ref) in enumerate(zip(got, ref, strict=True)):
        for k, (g, r) in enumerate(zip(ev_got, ev_ref, strict=True)):
            kept = (offsets[e] + k) % 2 == 0
            assert (g is not None) == kept
            if kept:
                assert g == pytest.approx(r, rel=1e-5)
    # one more list level: events * jets * subjets * record
    deep = ak.unflatten(jets, [2, 0, 1, 2, 0], axis=0)
    got = scorer(deep)
    assert str(got.type) == "5 * var * var * float32"
    np.testing.assert_allclose(ak.flatten(got, axis=None).to_numpy(), loss, rtol=1e-5)


def test_empty_chunks_give_shaped_empty_output(scorer):
    empty = scorer(np.zeros((0, 6), np.float32))
    assert empty.shape == (0,)
    assert empty.dtype == np.float32
    outs = scorer.outputs(np.zeros((0, 6), np.float32))
    assert outs["reconstruction"].shape == (0, 6)
    no_events = jets_record(raw_features(0), [])
    assert str(scorer(no_events).type) == "0 * var * float32"
    assert str(scorer.outputs(no_events)["reconstruction"].type) == "0 * var * 6 * float32"
    no_jets = jets_record(raw_features(0), [0, 0, 0])
    assert scorer(no_jets).tolist() == [[], [], []]


# ----------------------------------------------------------------------------- sessions
def test_pickle_round_trip_drops_the_session_and_reuses_the_process_one(scorer):
    x = raw_features(30)
    fresh = pickle.loads(pickle.dumps(scorer))  # before any session exists
    before = scorer(x)
    assert scorer._session is not None
    state = scorer.__getstate__()
    assert state["_session"] is None
    assert state["_lock"] is None
    blob = pickle.dumps(scorer)
    assert b"InferenceSession" not in blob
    created = session_creations()
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone(x), before)
    np.testing.assert_array_equal(fresh(x), before)
    assert session_creations() == created  # the unpickled copies found the process's session
    assert clone.contract == scorer.contract


def test_one_session_per_process_across_chunks_and_instances(tiny_ae_onnx):
    release_sessions()
    start = session_creations()
    s = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    assert session_creations() == start  # lazily: construction creates none
    for seed in range(5):  # five "chunks", each scorer re-created as coffea does per chunk
        chunk_scorer = pickle.loads(pickle.dumps(s))
        chunk_scorer(raw_features(10, seed))
    assert session_creations() == start + 1
    # different session options are a different session
    OnnxScorer(tiny_ae_onnx, intra_op_threads=1, graph_optimization="basic")(raw_features(3))
    assert session_creations() == start + 2
    s(raw_features(3))
    assert session_creations() == start + 2  # s found the session its copies made
    release_sessions()  # also drops the session an instance already holds
    s(raw_features(3))
    assert session_creations() == start + 3
    assert s.stats.session_creations == session_creations()


# ----------------------------------------------------------------------------- providers
def test_provider_order_with_a_mocked_gpu_build():
    # No GPU exists on this machine: the provider lists below are a mock of what an
    # onnxruntime-gpu build reports; only the ordering logic is under test here.
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(available=gpu) == gpu
    assert select_providers(available=gpu[1:]) == gpu[1:]
    assert select_providers(available=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers(["cpu", "cuda"], available=gpu) == [
        "CPUExecutionProvider", "CUDAExecutionProvider"]
    assert select_providers(["cuda"], available=gpu) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    # a provider the build lacks is dropped; nothing left is an error naming both lists
    assert select_providers(["tensorrt", "cpu"], available=gpu[1:]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match=r"CUDAExecutionProvider.*available: \['CPUExecutionProvider'\]"):
        select_providers(["cuda"], available=["CPUExecutionProvider"])


def test_real_provider_is_recorded(tiny_ae_onnx):
    # the real build here is CPU-only: the default falls back to CPU and says so
    s = OnnxScorer(tiny_ae_onnx, intra_op_threads=1)
    assert s.provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="none of the requested execution providers"):
        OnnxScorer(tiny_ae_onnx, providers=["cuda"]).provider  # noqa: B018


# ----------------------------------------------------------------------------- contract
def test_missing_feature_is_refused_before_scoring(scorer):
    counts = [2, 1]
    jets = jets_record(raw_features(3), counts)
    broken = ak.zip({f: jets[f] for f in jets.fields if f != "ptd"})
    with pytest.raises(ModelContractError, match=r"lacks \['ptd'\]"):
        scorer(broken)
    assert scorer.stats.calls == 0


def test_numpy_with_wrong_width_or_inputs_is_refused(scorer):
    with pytest.raises(ModelContractError, match=r"rows of shape \[6\].*shape \[4, 5\]"):
        scorer(np.zeros((4, 5), np.float32))
    with pytest.raises(ModelContractError, match=r"missing \['features'\], unexpected \['x'\]"):
        scorer({"x": np.zeros((4, 6), np.float32)})
    with pytest.raises(ModelContractError, match="expects float32, given complex128"):
        scorer(np.zeros((4, 6), np.complex128))
    assert scorer.stats.calls == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input0_name": "x"}, r"contract names \['x'\], ONNX graph has \['features'\]"),
        ({"input0_features": ["eta", "phi", "mass", "ptd", "axis_major"], "input0_shape": [5],
          "input0_centre": [0.0] * 5, "input0_scale": [1.0] * 5},
         r"contract per-row shape \[5\], ONNX graph shape \['n', 6\]"),
        ({"input0_dtype": "float64"}, "contract dtype float64, ONNX graph float32"),
        ({"outputs": [{"name": "loss", "meaning": "score"}, {"name": "mu", "meaning": "latent_mean"}]},
         r"output 'mu' of the contract is not among the ONNX graph outputs"),
        ({"opset": 13}, "contract says opset 13, the ONNX file tiny_ae.onnx declares opset 17"),
    ],
)
def test_contract_that_disagrees_with_the_graph_is_refused(tiny_ae_onnx, tmp_path, changes, message):
    path = write_variant(tiny_ae_onnx, tmp_path, **changes)
    with pytest.raises(ModelContractError, match=message):
        OnnxScorer(path)


def test_session_inputs_are_checked_again_where_the_session_is_made(tiny_ae_onnx, tmp_path):
    """The scorer carries the model bytes it checked: a file swapped at the same path later
    (e.g. a different file on a worker) changes nothing; bytes that do not match the contract
    (here put in by hand, as a damaged transfer would) are refused where the session is made."""
    path = tmp_path / "swapped.onnx"
    path.write_bytes(tiny_ae_onnx.read_bytes())
    ModelContract.read(tiny_ae_onnx).write(path)
    s = OnnxScorer(path)
    model = build_tiny_ae(0)
    torch.onnx.export(model, (torch.zeros(2, 6),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["loss", "reconstruction"],
                      dynamic_axes={"x": {0: "n"}, "loss": {0: "n"}, "reconstruction": {0: "n"}})
    x = raw_features(5)
    np.testing.assert_array_equal(s(x), OnnxScorer(tiny_ae_onnx)(x))
    bad = OnnxScorer(tiny_ae_onnx)
    bad._model_bytes = path.read_bytes()
    bad.model_sha256 = "swapped"
    with pytest.raises(ModelContractError,
                       match=r"ONNX Runtime session of tiny_ae.onnx.*has \['x'\]"):
        bad(raw_features(2))
    assert bad.stats.calls == 0


def test_missing_truncated_or_corrupt_model_file(tiny_ae_onnx, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        OnnxScorer(tmp_path / "nope.onnx")
    data = tiny_ae_onnx.read_bytes()
    for name, content in [("half", data[: len(data) // 2]), ("tail", data[:-40]),
                          ("junk", b"\x00\xffnot onnx" * 10), ("empty", b"")]:
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(content)
        ModelContract.read(tiny_ae_onnx).write(path)
        with pytest.raises(ModelFileError, match=rf"{name}\.onnx"):
            OnnxScorer(path)
    # the model file is fine but its sidecar is absent
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(data)
    with pytest.raises(ModelContractError, match="no model contract"):
        OnnxScorer(alone)


# ----------------------------------------------------------------------------- NaN / inf
def test_nonfinite_raise_names_features_and_counts(scorer):
    x = raw_features(10)
    x[2, 2] = np.nan
    x[5, 2] = np.inf
    x[7, 0] = -np.inf
    with pytest.raises(NonFiniteInputError, match=r"3 of 10 rows.*'eta': 1, 'mass': 2"):
        scorer(x)
    assert scorer.stats.calls == 0


def test_nonfinite_flag_sets_sentinel_counts_and_masks(tiny_ae_onnx):
    s = OnnxScorer(tiny_ae_onnx, nonfinite="flag", intra_op_threads=1, batch_size=4)
    x = raw_features(10)
    clean = direct_ort(tiny_ae_onnx, x)["loss"]
    x[[1, 6], 3] = np.nan
    x[8, 5] = np.inf
    before = x.copy()
    outs = s.outputs(x)
    bad = np.zeros(10, bool)
    bad[[1, 6, 8]] = True
    np.testing.assert_array_equal(outs[NONFINITE_MASK], bad)
    assert np.all(outs["loss"][bad] == FLAG_VALUE)
    assert np.all(outs["reconstruction"][bad] == FLAG_VALUE)
    np.testing.assert_allclose(outs["loss"][~bad], clean[~bad], rtol=1e-5, atol=1e-6)
    assert s.stats.nonfinite_rows == 3
    np.testing.assert_array_equal(x, before)  # caller's NaNs untouched
    # jagged: the mask comes back on the jets
    jets = jets_record(x, [4, 0, 6])
    mask = s.outputs(jets)[NONFINITE_MASK]
    assert mask.tolist() == [bad[:4].tolist(), [], bad[4:].tolist()]


# ----------------------------------------------------------------------------- scaling
def test_in_graph_scaling_feeds_raw_features(tiny_ae_onnx, tmp_path):
    """The same AE with standardization inside the graph: contract scaling 'in_graph'."""

    class Standardized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ae = build_tiny_ae(0)
            self.register_buffer("c", torch.tensor(TINY_AE_CENTRE))
            self.register_buffer("s", torch.tensor(TINY_AE_SCALE))

        def forward(self, x):
            return self.ae((x - self.c) / self.s)

    path = tmp_path / "ingraph.onnx"
    torch.onnx.export(Standardized().eval(), (torch.zeros(2, 6),), str(path), dynamo=False,
                      opset_version=17, input_names=["features"],
                      output_names=["loss", "reconstruction"],
                      dynamic_axes={"features": {0: "n"}, "loss": {0: "n"},
                                    "reconstruction": {0: "n"}})
    data = ModelContract.read(tiny_ae_onnx).to_dict()
    data["inputs"][0].update(scaling="in_graph", centre=None, scale=None)
    ModelContract.from_dict(data).write(path)
    x = raw_features(200)
    np.testing.assert_allclose(OnnxScorer(path)(x), direct_ort(tiny_ae_onnx, x)["loss"],
                               rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- constituents
def test_padded_constituent_inputs_from_awkward_and_numpy(tmp_path):
    """A two-input model: constituents [4, 3] plus a mask [4]; score = masked sum of a linear
    map. The awkward path pads/truncates to 4 and derives the mask itself."""
    from coffea_ad.inference import InputSpec, OutputSpec

    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor([1.0, -2.0, 0.5]))

        def forward(self, parts, mask):
            return ((parts * self.w).sum(-1) * mask).sum(-1)

    path = tmp_path / "pool.onnx"
    torch.onnx.export(Pool(), (torch.zeros(2, 4, 3), torch.ones(2, 4)), str(path), dynamo=False,
                      opset_version=17, input_names=["parts", "mask"], output_names=["score"],
                      dynamic_axes={"parts": {0: "n"}, "mask": {0: "n"}, "score": {0: "n"}})
    ModelContract(
        name="pool", kind="graph_autoencoder", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec("parts", ["pt", "deta", "dphi"], [4, 3], pad_length=4),
                InputSpec("mask", ["mask"], [4], pad_length=4)],
        outputs=[OutputSpec("score", "score")], score="score",
    ).write(path)
    s = OnnxScorer(path)
    # events * jets * constituents: jet sizes 2, 6 (truncated to 4), 0, 1
    rng = np.random.default_rng(3)
    sizes = [2, 6, 0, 1]
    vals = rng.normal(size=(sum(sizes), 3)).astype(np.float32)
    parts = ak.zip({f: ak.unflatten(vals[:, j], sizes) for j, f in enumerate(["pt", "deta", "dphi"])})
    parts = ak.unflatten(parts, [3, 0, 1])  # 2 events... 3 jets, 0 jets, 1 jet
    w = np.array([1.0, -2.0, 0.5])
    expect, start = [], 0
    for size in sizes:  # reference loop: first min(size, 4) constituents count
        rows = vals[start : start + min(size, 4)]
        expect.append(float((rows @ w).sum()))
        start += size
    got = s({"parts": parts})
    assert ak.num(got).tolist() == [3, 0, 1]
    np.testing.assert_allclose(ak.flatten(got).to_numpy(), expect, rtol=1e-5, atol=1e-6)
    # the same through the numpy-dict path
    padded = np.zeros((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), np.float32)
    start = 0
    for i, size in enumerate(sizes):
        k = min(size, 4)
        padded[i, :k] = vals[start : start + k]
        mask[i, :k] = 1
        start += size
    np.testing.assert_allclose(s({"parts": padded, "mask": mask}), expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelContractError, match=r"'parts' expects rows of shape \[4, 3\]"):
        s({"parts": padded[:, :3], "mask": mask})


# ----------------------------------------------------------------------------- add_scores
def test_add_scores_event_level_contract(tmp_path, tiny_ae_onnx):
    path = write_variant(tiny_ae_onnx, tmp_path, level="event", jets=None)
    from coffea_ad.inference import add_scores

    x = raw_features(5)
    events = ak.zip({f: x[:, j] for j, f in enumerate(TINY_AE_FEATURES)} | {"run": np.ones(5)})
    events = add_scores(events, path, name="ae")
    np.testing.assert_allclose(events.ae.to_numpy(), direct_ort(tiny_ae_onnx, x)["loss"], rtol=1e-5)
