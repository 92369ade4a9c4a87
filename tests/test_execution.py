"""Scale and resilience of :mod:`coffea_ad.execution`.

Every histogram is compared with an independent reference computed with uproot + numpy
straight from the files. Dask tests start real ``distributed`` clusters on loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import awkward as ak
import cloudpickle
import hist
import numpy as np
import pytest
import uproot
from coffea import processor

from coffea_ad.execution import (
    IncompleteRunError,
    SkippedFilesWarning,
    dask_client,
    is_reader_error,
    run_processor,
)

# NanoEvents complains about cross-references our small files (and real NanoAOD) lack
pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:UserWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:UserWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]

# worker processes unpickle the test processor by value (they cannot import this module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PT_BINS = (30, 0.0, 300.0)
BASKET = 50  # entries per basket of the generated files


# ----------------------------------------------------------------------------- inputs
def _write_events(path: Path, n: int, seed: int) -> Path:
    """A NanoAOD-like file (run, luminosityBlock, event, genWeight, Jet_*) with baskets of
    BASKET entries, so one corrupt basket spoils exactly one chunk of BASKET entries."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:
        for start in range(0, n, BASKET):
            m = min(BASKET, n - start)
            nj = rng.poisson(3, m)
            jets = {name: ak.unflatten(values.astype(np.float32), nj) for name, values in {
                "pt": rng.exponential(60.0, nj.sum()) + 15.0,
                "eta": rng.normal(0.0, 1.5, nj.sum()),
                "phi": rng.uniform(-np.pi, np.pi, nj.sum()),
                "mass": rng.exponential(10.0, nj.sum()),
            }.items()}
            data = {"run": np.ones(m, np.uint32), "luminosityBlock": np.full(m, seed, np.uint32),
                    "event": np.arange(start, start + m, dtype=np.uint64),
                    "genWeight": rng.normal(1.0, 0.3, m).astype(np.float32),
                    "Jet": ak.zip(jets)}
            if start == 0:
                f.mktree("Events", {k: v.type if isinstance(v, ak.Array) else v.dtype
                                    for k, v in data.items()})
            f["Events"].extend(data)
    return path


@pytest.fixture(scope="module")
def gen_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Two datasets of generated files: qcd (300 + 250 events), svj (120 events)."""
    d = tmp_path_factory.mktemp("exec_files")
    return {"qcd": [str(_write_events(d / "qcd_0.root", 300, 1)),
                    str(_write_events(d / "qcd_1.root", 250, 2))],
            "svj": [str(_write_events(d / "svj_0.root", 120, 3))]}


def _reference(files: dict[str, list[str | tuple[str, tuple[int, int]]]]
               ) -> dict[str, dict[str, np.ndarray | float | int]]:
    """Per dataset: jet-pt counts, weighted sums and sum of weights, read with uproot and
    filled with numpy; a ``(path, (start, stop))`` entry leaves that entry range out."""
    edges = np.linspace(PT_BINS[1], PT_BINS[2], PT_BINS[0] + 1)
    ref = {}
    for ds, paths in files.items():
        counts = np.zeros(PT_BINS[0])
        sums = np.zeros(PT_BINS[0])
        sumw, n = 0.0, 0
        for entry in paths:
            path, skip = (entry, (0, 0)) if isinstance(entry, str) else entry
            arrays = uproot.open(path)["Events"].arrays(["Jet_pt", "genWeight"])
            keep = np.ones(len(arrays), bool)
            keep[slice(*skip)] = False
            arrays = arrays[keep]
            pt = ak.to_numpy(ak.flatten(arrays.Jet_pt))
            w = np.repeat(ak.to_numpy(arrays.genWeight).astype(np.float64),
                          ak.to_numpy(ak.num(arrays.Jet_pt)))
            counts += np.histogram(pt, edges)[0]
            sums += np.histogram(pt, edges, weights=w)[0]
            sumw += float(ak.to_numpy(arrays.genWeight).astype(np.float64).sum())
            n += len(arrays)
        ref[ds] = {"counts": counts, "sums": sums, "sumw": sumw, "events": n}
    return ref


def _fileset(files: dict[str, list[str]]) -> dict[str, dict]:
    return {ds: {"files": {p: "Events" for p in paths}, "metadata": {"kind": ds}}
            for ds, paths in files.items()}


# ----------------------------------------------------------------------------- processor
class JetCounter(processor.ProcessorABC):
    """Jet-pt histograms (unweighted and genWeight-weighted), sum of weights and event count
    per dataset (one-bin histograms). Written for both paths: eager/virtual awkward events
    (Runner) and dask-awkward events (``apply_to_fileset``).

    Test hooks (eager path only): ``sleep`` seconds per chunk; ``log_dir`` gets one file per
    ``process`` call (``pid-dataset-start-stop-uuid``); while the file ``fail_flag`` exists,
    the chunk of ``fail_file`` (name prefix) starting at ``fail_at`` raises;
    ``record_worker`` counts chunks per Dask worker.
    """

    def __init__(self, *, sleep: float = 0.0, log_dir: str | None = None,
                 fail_flag: str | None = None, fail_file: str = "", fail_at: int = -1,
                 record_worker: bool = False) -> None:
        self.sleep = sleep
        self.log_dir = log_dir
        self.fail_flag = fail_flag
        self.fail_file = fail_file
        self.fail_at = fail_at
        self.record_worker = record_worker

    def process(self, events):
        import dask_awkward as dak

        lazy = isinstance(events, dak.Array)
        meta = events.metadata
        ds = meta["dataset"]
        out = {}
        if not lazy:
            if self.log_dir:
                span = f"{meta['entrystart']}-{meta['entrystop']}"
                name = f"{os.getpid()}-{ds}-{span}-{uuid.uuid4().hex}"
                Path(self.log_dir, name).touch()
            if (self.fail_flag and Path(self.fail_flag).exists()
                    and Path(meta["filename"]).name.startswith(self.fail_file)
                    and meta["entrystart"] == self.fail_at):
                raise RuntimeError(f"interrupted at entry {self.fail_at}")
            time.sleep(self.sleep)
            if self.record_worker:
                import distributed

                out["workers"] = {distributed.get_worker().address: 1}
        lib = dak if lazy else ak  # same calls, eager or lazy
        Hist = importlib.import_module("hist.dask").Hist if lazy else hist.Hist
        pt = lib.flatten(events.Jet.pt)
        weight = lib.values_astype(events.genWeight, np.float64)
        w = lib.flatten(lib.broadcast_arrays(weight, events.Jet.pt)[0])
        counts = Hist(hist.axis.StrCategory([ds], name="dataset", growth=True),
                      hist.axis.Regular(*PT_BINS, name="pt"), storage=hist.storage.Double())
        counts.fill(dataset=ds, pt=pt)
        sums = Hist(hist.axis.StrCategory([ds], name="dataset", growth=True),
                    hist.axis.Regular(*PT_BINS, name="pt"), storage=hist.storage.Weight())
        sums.fill(dataset=ds, pt=pt, weight=w)
        # per-event totals as one-bin histograms: histograms are what both paths compare
        totals = Hist(hist.axis.StrCategory([ds], name="dataset", growth=True),
                      hist.axis.Regular(1, 0.0, 2.0, name="one"), storage=hist.storage.Weight())
        totals.fill(dataset=ds, one=lib.ones_like(weight), weight=weight)
        nevents = Hist(hist.axis.StrCategory([ds], name="dataset", growth=True),
                       hist.axis.Regular(1, 0.0, 2.0, name="one"), storage=hist.storage.Double())
        nevents.fill(dataset=ds, one=lib.ones_like(weight))
        out.update(counts=counts, sums=sums, totals=totals, nevents=nevents)
        return out

    def postprocess(self, accumulator):
        return accumulator


def _assert_matches(out: dict, ref: dict, *, what: str = "") -> None:
    for ds, r in ref.items():
        counts = out["counts"][{"dataset": ds}].values()
        np.testing.assert_array_equal(counts, r["counts"], err_msg=f"{what} {ds} counts")
        sums = out["sums"][{"dataset": ds}].values()
        np.testing.assert_allclose(sums, r["sums"], rtol=1e-9, atol=1e-9,
                                   err_msg=f"{what} {ds} weights")
        sumw = out["totals"][{"dataset": ds}].values()[0]
        assert sumw == pytest.approx(r["sumw"], rel=1e-12), (what, ds)
        assert out["nevents"][{"dataset": ds}].values()[0] == r["events"], (what, ds)


def _assert_each_chunk_once(info: dict) -> None:
    for f in info["files"]:
        assert f["error"] is None, f
        assert not f["skipped_chunks"], f
        assert f["entries_processed"] == f["entries"] == f["entries_planned"], f
        assert f["complete"], f
    assert info["complete"]


# ----------------------------------------------------------------------------- tests
def test_provenance_records_every_file_versions_and_fileset(gen_files):
    out = run_processor(_fileset(gen_files), JetCounter(), executor="iterative", chunksize=40,
                        progress=False)
    info = out["run_info"]
    _assert_matches(out, _reference(gen_files), what="iterative")
    _assert_each_chunk_once(info)
    by_file = {f["file"]: f for f in info["files"]}
    held = {p: uproot.open(p)["Events"].num_entries for ps in gen_files.values() for p in ps}
    assert {p: r["entries"] for p, r in by_file.items()} == held
    # coffea evens chunks out: 300 entries at target 40 -> round(300/40)=8 chunks
    assert by_file[gen_files["qcd"][0]]["chunks_planned"] == 8
    assert info["chunks"] == sum(f["chunks_planned"] for f in info["files"])
    for name in ("coffea", "awkward", "uproot", "onnxruntime", "coffea-ad"):
        assert info["versions"][name], name
    assert info["fileset"]["qcd"]["files"] == {p: "Events" for p in gen_files["qcd"]}
    assert info["fileset"]["qcd"]["metadata"] == {"kind": "qcd"}
    json.dumps(info)  # the CLI writes it as run.json


def test_maxchunks_is_reported_as_partial_not_as_error(gen_files):
    out = run_processor(_fileset(gen_files), JetCounter(), executor="iterative", chunksize=50,
                        maxchunks=2)
    info = out["run_info"]
    assert not info["complete"]
    assert info["entries_processed"] == 2 * 50 + 2 * 60  # 2 chunks of qcd_0, 2 of svj_0 (120/2)
    assert out["nevents"].values().ravel().tolist() == [100, 120]  # qcd, svj
    planned = {Path(f["file"]).name: f["entries_planned"] for f in info["files"]}
    assert planned == {"qcd_0.root": 100, "qcd_1.root": 0, "svj_0.root": 120}


def test_reader_errors_are_told_apart_from_analysis_bugs(tmp_path, pfnano_file):
    truncated = tmp_path / "t.root"
    truncated.write_bytes(Path(pfnano_file).read_bytes()[:100_000])
    with pytest.raises(OSError, match=r"t\.root") as err:
        uproot.open(truncated)["Events"]
    assert is_reader_error(err.value)
    with pytest.raises(RuntimeError) as wrapped:
        raise RuntimeError("Failed processing file") from err.value  # coffea-style wrapping
    assert is_reader_error(wrapped.value)
    assert not is_reader_error(ZeroDivisionError("analysis bug"))
    assert not is_reader_error(ValueError("bad threshold"))


def _corrupt_basket(src: str, dst: Path, *, branch: str, basket: int) -> Path:
    """Copy ``src`` and overwrite one compressed basket of ``branch`` with zeros."""
    shutil.copy(src, dst)
    dst.chmod(0o644)
    b = uproot.open(dst)["Events"][branch]
    seek = int(b.member("fBasketSeek")[basket])
    nbytes = int(b.member("fBasketBytes")[basket])
    with open(dst, "r+b") as f:
        f.seek(seek)
        f.write(b"\0" * nbytes)
    return dst


def test_bad_files_reported_and_good_events_counted_once(gen_files, tmp_path, cms_data):
    # a real CMS file cut short with `head -c` (its keys and streamers are at the end)
    truncated = tmp_path / "nano_dy_truncated.root"
    with open(truncated, "wb") as fout:
        subprocess.run(["head", "-c", "150000", str(cms_data / "nano_dy.root")], stdout=fout,
                       check=True)
    # a file that opens but whose third Jet_pt basket (entries 100-150, key included) is zeros
    corrupt = _corrupt_basket(gen_files["qcd"][1], tmp_path / "qcd_corrupt.root",
                              branch="Jet_pt", basket=2)
    files = {"qcd": [*gen_files["qcd"], str(truncated), str(corrupt)], "svj": gen_files["svj"]}

    with pytest.raises(IncompleteRunError) as err:
        run_processor(_fileset(files), JetCounter(), executor="iterative", chunksize=50)
    assert "nano_dy_truncated.root" in str(err.value)
    assert "OSError" in str(err.value)

    with pytest.raises(Exception, match=r"qcd_corrupt\.root.*entrystart=100.*DeserializationError"):
        # opening is fine, reading the corrupt basket is not: the chunk is named
        run_processor(_fileset({"qcd": [str(corrupt)]}), JetCounter(), executor="iterative",
                      chunksize=50, retries=0)

    with pytest.warns(SkippedFilesWarning) as warned:
        out = run_processor(_fileset(files), JetCounter(), executor="futures", workers=2,
                            chunksize=50, skipbadfiles=True)
    message = str(warned[0].message)
    assert "nano_dy_truncated.root" in message
    assert "qcd_corrupt.root" in message
    # the good files once, plus the corrupt copy's source without entries [100, 150)
    expected = {"qcd": [*gen_files["qcd"], (gen_files["qcd"][1], (100, 150))],
                "svj": gen_files["svj"]}
    _assert_matches(out, _reference(expected), what="skipping")
    by_file = {Path(f["file"]).name: f for f in out["run_info"]["files"]}
    assert by_file["nano_dy_truncated.root"]["entries"] is None
    assert "OSError" in by_file["nano_dy_truncated.root"]["error"]
    bad = by_file["qcd_corrupt.root"]
    assert bad["entries"] == 250
    assert bad["entries_processed"] == 200
    assert not bad["complete"]
    assert [(c["entrystart"], c["entrystop"]) for c in bad["skipped_chunks"]] == [(100, 150)]
    assert bad["skipped_chunks"][0]["error"].startswith("DeserializationError")
    assert by_file["qcd_0.root"]["complete"]
    assert by_file["svj_0.root"]["complete"]
    assert len(out["run_info"]["skipped"]) == 2


def test_analysis_errors_are_never_skipped(gen_files, tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    proc = JetCounter(fail_flag=str(flag), fail_at=50)
    with pytest.raises(Exception, match="interrupted at entry 50"):
        run_processor(_fileset(gen_files), proc, executor="iterative", chunksize=50,
                      skipbadfiles=True, retries=0)


def test_checkpoint_resume_skips_finished_chunks(gen_files, tmp_path):
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "log"
    log.mkdir()
    flag = tmp_path / "interrupt"
    flag.touch()
    fileset = _fileset(gen_files)
    # chunks run in fileset order: qcd_0 (6 x 50), qcd_1 (5 x 50), svj_0 (2 x 60); the run
    # dies at qcd_1 [100, 150) after 8 finished chunks
    proc = JetCounter(log_dir=str(log), fail_flag=str(flag), fail_file="qcd_1.root",
                      fail_at=100)
    with pytest.raises(Exception, match="interrupted"):
        run_processor(fileset, proc, executor="iterative", chunksize=50, retries=0,
                      checkpoint_dir=ckpt)
    assert len(list(ckpt.rglob("*.coffea"))) == 8
    assert len(list(log.iterdir())) == 9

    flag.unlink()  # the cause is gone: resume on a process pool (checkpoints read there)
    for p in log.iterdir():
        p.unlink()
    out = run_processor(fileset, proc, executor="futures", workers=2, chunksize=50,
                        checkpoint_dir=ckpt)
    total = out["run_info"]["chunks"]
    assert total == 6 + 5 + 2
    assert len(list(log.iterdir())) == total - 8  # finished chunks were not redone
    assert out["run_info"]["chunks_from_checkpoint"] == 8
    _assert_matches(out, _reference(gen_files), what="resumed")
    _assert_each_chunk_once(out["run_info"])

    # a different configuration never reuses those outputs
    other = JetCounter(log_dir=str(log), fail_flag=str(flag), fail_file="qcd_1.root",
                       fail_at=150)
    out = run_processor(fileset, other, executor="iterative", chunksize=50,
                        checkpoint_dir=ckpt)
    assert out["run_info"]["chunks_from_checkpoint"] == 0


def test_iterative_and_futures_agree_across_chunk_sizes(gen_files):
    ref = _reference(gen_files)
    # (Dask with 1 and 2 workers: test_dask_matches_reference_with_two_workers_and_one)
    for executor, workers, chunksize in (("iterative", 1, 1000), ("futures", 2, 33)):
        out = run_processor(_fileset(gen_files), JetCounter(), executor=executor,
                            workers=workers, chunksize=chunksize)
        _assert_matches(out, ref, what=f"{executor} x{workers} chunk {chunksize}")
        _assert_each_chunk_once(out["run_info"])


# ----------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def fake_gpu_client():
    """A cluster on loopback with two single-thread workers, one declaring the abstract
    resource ``GPU=1``. It is not a GPU (none here): only Dask's placement logic is tested."""
    distributed = pytest.importorskip("distributed")
    spec = {"cls": distributed.Nanny, "options": {"nthreads": 1, "host": "127.0.0.1"}}
    gpu = {"cls": distributed.Nanny,
           "options": {"nthreads": 1, "host": "127.0.0.1", "resources": {"GPU": 1}}}
    scheduler = {"cls": distributed.Scheduler,
                 "options": {"host": "127.0.0.1", "dashboard_address": None}}
    with distributed.SpecCluster(workers={"cpu": spec, "gpu": gpu}, scheduler=scheduler) as cl, \
            distributed.Client(cl) as client:
        client.wait_for_workers(2)
        yield client


@pytest.mark.dask
def test_dask_matches_reference_with_two_workers_and_one(gen_files, fake_gpu_client):
    client = fake_gpu_client
    ref = _reference(gen_files)
    out = run_processor(_fileset(gen_files), JetCounter(record_worker=True), client=client,
                        chunksize=30)
    _assert_matches(out, ref, what="dask x2 chunk 30")
    _assert_each_chunk_once(out["run_info"])

    # resources={"GPU": 1}: every chunk task lands on the one worker that declares it
    info = client.scheduler_info()["workers"]
    gpu_worker = [a for a, w in info.items() if w["resources"].get("GPU")]
    assert len(gpu_worker) == 1
    out = run_processor(_fileset(gen_files), JetCounter(record_worker=True), client=client,
                        chunksize=45, resources={"GPU": 1})
    assert out["workers"] == {gpu_worker[0]: out["run_info"]["chunks"]}
    assert out["run_info"]["executor"]["resources"] == {"GPU": 1}
    _assert_matches(out, ref, what="dask, GPU-annotated (one worker)")


@pytest.mark.dask
def test_attaches_to_a_running_scheduler_by_address_or_file(gen_files, fake_gpu_client,
                                                            tmp_path):
    ref = _reference(gen_files)
    address = fake_gpu_client.scheduler.address
    scheduler_file = tmp_path / "scheduler.json"
    # what `dask scheduler --scheduler-file` writes (Client.write_scheduler_file trips on
    # this distributed's scheduler_info); clients only read "address"
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": address}))
    for scheduler in (address, str(scheduler_file)):
        out = run_processor(_fileset(gen_files), JetCounter(record_worker=True),
                            scheduler=scheduler, chunksize=100)
        _assert_matches(out, ref, what=f"attached to {scheduler}")
        # the work ran on the existing cluster's workers, not on a new LocalCluster
        assert set(out["workers"]) <= set(fake_gpu_client.scheduler_info()["workers"])
        assert out["run_info"]["executor"]["scheduler"] == scheduler


@pytest.mark.dask
def test_dask_awkward_path_matches_runner(gen_files, fake_gpu_client, tmp_path):
    pytest.importorskip("dask_histogram")  # hist.dask, the histograms of the lazy path
    truncated = tmp_path / "cut.root"
    truncated.write_bytes(Path(gen_files["svj"][0]).read_bytes()[:3000])
    files = {"qcd": gen_files["qcd"], "svj": [*gen_files["svj"], str(truncated)]}
    with pytest.raises(IncompleteRunError, match=r"cut\.root"):
        run_processor(_fileset(files), JetCounter(), executor="dask-awkward",
                      client=fake_gpu_client, chunksize=64)
    with pytest.warns(SkippedFilesWarning, match=r"cut\.root"):
        lazy = run_processor(_fileset(files), JetCounter(), executor="dask-awkward",
                             client=fake_gpu_client, chunksize=64, skipbadfiles=True)
    _assert_matches(lazy, _reference(gen_files), what="dask-awkward")
    eager = run_processor(_fileset(gen_files), JetCounter(), executor="iterative",
                          chunksize=64)
    for key in ("counts", "sums"):
        assert lazy[key] == eager[key]  # identical bin contents, axes, storage
    by_file = {Path(f["file"]).name: f for f in lazy["run_info"]["files"]}
    assert by_file["cut.root"]["entries"] is None
    assert by_file["cut.root"]["error"]
    assert by_file["qcd_0.root"]["entries_processed"] == 300


@pytest.mark.dask
def test_worker_killed_mid_run_gives_identical_histograms(gen_files, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    proc = JetCounter(sleep=0.2, log_dir=str(log))
    killed: dict[str, float] = {}
    with dask_client(workers=2, threads=1) as client:
        before = set(client.run(os.getpid).values())

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                started = [p.name for p in log.iterdir()]
                if len(started) >= 3:  # both workers are busy with chunks
                    pid = int(started[0].split("-")[0])
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, at=time.time())
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        out = run_processor(_fileset(gen_files), proc, client=client, chunksize=25)
        killer.join()
        after = set(client.run(os.getpid).values())
    assert killed, "no worker was killed: the run ended before any chunk started?"
    assert killed["pid"] in before
    assert killed["pid"] not in after
    later = [p for p in log.iterdir() if p.stat().st_mtime > killed["at"]]
    assert later, "no chunk started after the kill: the kill did not happen mid-run"
    _assert_matches(out, _reference(gen_files), what="after a worker was killed")
    _assert_each_chunk_once(out["run_info"])


# ----------------------------------------------------------------------------- CLI
def test_cli_run_writes_run_json_and_refuses_unreadable_files(tiny_ae_onnx, pfnano_file,
                                                              tmp_path):
    from coffea_ad.inference.contract import file_sha256

    truncated = tmp_path / "pfnano_cut.root"
    truncated.write_bytes(Path(pfnano_file).read_bytes()[:200_000])
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"pf": {"files": {str(pfnano_file): "Events"}}}))
    cmd = [sys.executable, "-m", "coffea_ad.cli", "run", "svj", "--fileset", str(fileset),
           "--model", str(tiny_ae_onnx), "--executor", "iterative", "--no-progress",
           "--set", "tag_threshold=0.5", "-o", str(tmp_path / "out")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["entries"] == info["entries_processed"] == 10
    assert info["complete"]
    assert info["models"] == {str(Path(tiny_ae_onnx).resolve()): file_sha256(tiny_ae_onnx)}
    assert info["onnx_providers"] == {"CPUExecutionProvider": 10}
    assert "run_info" not in json.loads((tmp_path / "out" / "cutflow.json").read_text())

    good = (tmp_path / "out" / "run.json").read_bytes()
    fileset.write_text(json.dumps({"pf": {"files": {str(pfnano_file): "Events",
                                                    str(truncated): "Events"}}}))
    res = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode != 0
    assert "pfnano_cut.root" in res.stderr
    assert "--skip-bad-files" in res.stderr
    # the failure is recorded beside the earlier good run, which a failure never replaces
    assert (tmp_path / "out" / "run.json").read_bytes() == good
    failed = json.loads((tmp_path / "out.failed.json").read_text())
    assert failed["status"] == "failed"
    assert "pfnano_cut.root" in failed["error"]
