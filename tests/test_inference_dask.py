"""OnnxScorer under Dask: no model run on the client, a real LocalCluster of 2 worker
processes (dask-awkward map_partitions and coffea's Runner + DaskExecutor), one ONNX Runtime
session per worker process.
"""

from __future__ import annotations

import sys
import warnings

import awkward as ak
import numpy as np
import pytest
from coffea import processor
from conftest import TINY_AE_CENTRE, TINY_AE_FEATURES, TINY_AE_SCALE

from coffea_ad.inference import OnnxScorer, add_scores, release_sessions, session_creations

dask = pytest.importorskip("dask")
dak = pytest.importorskip("dask_awkward")
distributed = pytest.importorskip("distributed")
ort = pytest.importorskip("onnxruntime")



def _jets(n_events: int, seed: int = 2) -> tuple[ak.Array, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, n_events)
    x = (np.asarray(TINY_AE_CENTRE) + rng.normal(size=(counts.sum(), 6)) * TINY_AE_SCALE)
    x = x.astype(np.float32)
    # contiguous copies: from_awkward's graph is pickled, and pickle refuses strided buffers
    fields = {f: ak.unflatten(x[:, j].copy(), counts) for j, f in enumerate(TINY_AE_FEATURES)}
    fields["pt"] = ak.unflatten(rng.uniform(200, 900, counts.sum()), counts)
    return ak.zip(fields), x


def _direct(model, x: np.ndarray) -> np.ndarray:
    scaled = ((x.astype(np.float64) - TINY_AE_CENTRE) / TINY_AE_SCALE).astype(np.float32)
    return ort.InferenceSession(str(model)).run(["loss"], {"features": scaled})[0]


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    # the Runner test's processor lives in this module, which workers cannot import
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_graph_building_never_runs_the_model_on_the_client(tiny_ae_onnx):
    release_sessions()
    start = session_creations()
    jets, _ = _jets(40)
    djets = dak.from_awkward(jets, npartitions=4)
    scorer = OnnxScorer(tiny_ae_onnx, intra_op_threads=1, nonfinite="flag")
    scores = scorer(djets)
    outs = scorer.outputs(djets)
    assert str(scores._meta.type).endswith("var * float32")
    assert set(outs) == {"loss", "reconstruction", "nonfinite"}
    assert str(outs["reconstruction"]._meta.type).endswith("var * 6 * float32")
    columns = dak.report_necessary_columns(scores)
    assert set(next(iter(columns.values()))) == set(TINY_AE_FEATURES)  # 'pt' is not read
    assert session_creations() == start  # typetracer path: no session, no model run
    assert scorer.stats.calls == 0


@pytest.mark.dask
def test_local_cluster_map_partitions(tiny_ae_onnx, client):
    release_sessions()
    client_sessions = session_creations()
    client.run(release_sessions)
    before = client.run(session_creations)
    jets, x = _jets(200)
    djets = dak.from_awkward(jets, npartitions=8)
    scorer = OnnxScorer(tiny_ae_onnx, intra_op_threads=1, batch_size=64)
    scores = scorer(djets)
    got = client.compute(scores).result()
    assert ak.num(got).tolist() == ak.num(jets.eta).tolist()
    np.testing.assert_allclose(ak.flatten(got).to_numpy(), _direct(tiny_ae_onnx, x),
                               rtol=1e-5, atol=1e-6)
    # 8 partitions on 2 worker processes: at most one session each, none on the client
    per_worker = {w: n - before[w] for w, n in client.run(session_creations).items()}
    assert len(per_worker) == 2
    assert all(n <= 1 for n in per_worker.values()), per_worker
    assert 1 <= sum(per_worker.values()) <= 2
    assert session_creations() == client_sessions
    # the workers really used the (pickled) scorer: their pids differ from ours
    import os

    assert os.getpid() not in client.run(os.getpid).values()


class ScoreSum(processor.ProcessorABC):
    """Minimal coffea processor: jet count and score sum per dataset via add_scores."""

    def __init__(self, model: str) -> None:
        self.model = model

    def process(self, events):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            events = add_scores(events, self.model, name="ae", intra_op_threads=1)
        scores = ak.flatten(events.FatJet.ae)
        return {
            "jets": len(scores),
            "sum": float(ak.sum(scores)),
            "events": len(events),
            "pids": {os_getpid()},
            "providers": {add_scores_provider(self.model)},
        }

    def postprocess(self, acc):
        return acc


def os_getpid() -> int:
    import os

    return os.getpid()


def add_scores_provider(model: str) -> str:
    return OnnxScorer(model, intra_op_threads=1).provider


@pytest.mark.dask
@pytest.mark.slow  # each worker process JIT-compiles the feature kernels: ~15 s on a quiet box
def test_coffea_runner_with_dask_executor(tiny_ae_onnx, pfnano_file, client):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    release_sessions()
    client.run(release_sessions)
    before = client.run(session_creations)
    start = session_creations()
    proc = ScoreSum(str(tiny_ae_onnx))
    runner = processor.Runner(
        executor=processor.DaskExecutor(client=client, status=False, retries=0),
        schema=PFNanoAODSchema, chunksize=3,  # 10 events -> 4 chunks
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea\.nanoevents")
        out = runner({"pfnano": {"files": {str(pfnano_file): "Events"}}}, proc,
                     treename="Events")
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                             schemaclass=PFNanoAODSchema, mode="eager").events()
    ref = OnnxScorer(tiny_ae_onnx, intra_op_threads=1).score_events(events)
    assert out["events"] == 10
    assert out["jets"] == int(ak.sum(ak.num(ref)))
    assert out["sum"] == pytest.approx(float(ak.sum(ref)), rel=1e-5)
    assert out["providers"] == {"CPUExecutionProvider"}
    assert len(out["pids"]) >= 1
    assert os_getpid() not in out["pids"]
    # 4 chunks, each with its own unpickled processor: still <= 1 session per worker process
    per_worker = {w: n - before[w] for w, n in client.run(session_creations).items()}
    assert all(n <= 1 for n in per_worker.values()), per_worker
    assert sum(per_worker.values()) >= 1
    assert session_creations() - start == 1  # only the reference above, on the client
