"""Running processors at scale: coffea ``processor.Runner`` (iterative, futures or Dask
executors) or the dask-awkward path, with an account of every entry of every input file.

A Dask ``distributed.LocalCluster`` (on loopback) is the embedded default; give a scheduler
address (or a scheduler JSON file) to attach to an existing cluster (dask-jobqueue /
dask-gateway sites, see ``docs/dask.md``).

Nothing lost, nothing duplicated: :func:`run_processor` plans the chunks itself (one metadata
pass over the files, whose failures are collected per file), wraps the processor so that each
chunk reports ``(dataset, file, entrystart, entrystop)`` and the number of events it really
saw, and compares the two after the run. The comparison, package versions, model sha256 and
ONNX providers are returned under the ``run_info`` key of the output. A run whose processed
entries differ from the planned ones raises :class:`IncompleteRunError`, unless the difference
is bad files the caller allowed to skip, which are reported (``run_info["skipped"]`` and a
:class:`SkippedFilesWarning`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import cloudpickle
import uproot
from coffea import processor
from coffea.nanoevents import PFNanoAODSchema
from coffea.processor.checkpointer import CheckpointerABC
from coffea.processor.executor import FileMeta, WorkItem

from coffea_ad._optional import require

__all__ = [
    "RUN_INFO_KEY",
    "ChunkCheckpointer",
    "IncompleteRunError",
    "SkippedFilesWarning",
    "apply_processor",
    "dask_client",
    "is_reader_error",
    "load_fileset",
    "processor_fingerprint",
    "run_processor",
]

Executor = Literal["iterative", "futures", "dask", "dask-awkward"]

#: Key of the output dict that holds the provenance record of a run.
RUN_INFO_KEY = "run_info"

# Keys coffea reserves in a dataset's metadata (it raises on them); we keep ours elsewhere.
_RESERVED = {"dataset", "filename", "treename", "metadata", "entrystart", "entrystop",
             "fileuuid", "numentries", "uuid", "clusters", "preload"}

# Packages whose versions go into every run record.
_VERSIONED = ("coffea-ad", "coffea", "awkward", "uproot", "numpy", "hist", "onnxruntime",
              "onnxruntime-gpu", "dask", "distributed", "dask-awkward")


class IncompleteRunError(RuntimeError):
    """The entries processed differ from the entries the input files hold.

    Attributes:
        run_info: the provenance record (per-file entries held / processed, errors).
        output: the accumulated output of the chunks that did complete.
    """

    def __init__(self, message: str, *, run_info: dict[str, Any], output: Any = None) -> None:
        super().__init__(message)
        self.run_info = run_info
        self.output = output


class SkippedFilesWarning(UserWarning):
    """Files or chunks were skipped because they could not be read (skipping was allowed)."""


# ----------------------------------------------------------------------------- filesets
def load_fileset(fileset: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Read a fileset (coffea dataset format, a dict or a JSON path) into a plain dict."""
    if isinstance(fileset, (str, Path)):
        path = Path(fileset)
        if not path.is_file():
            raise FileNotFoundError(f"fileset JSON {path} does not exist")
        fileset = json.loads(path.read_text())
    return {name: dict(entry) if isinstance(entry, Mapping) else {"files": list(entry)}
            for name, entry in fileset.items()}


def _runner_fileset(fileset: Mapping[str, Any], treename: str = "Events") -> dict[str, Any]:
    """The fileset as coffea takes it: ``{files: {path: treename}, metadata: {...}}`` with
    flat, non-reserved metadata (coffea raises on reserved keys)."""
    out: dict[str, Any] = {}
    for name, entry in fileset.items():
        files = entry["files"] if isinstance(entry, Mapping) else entry
        meta = dict(entry.get("metadata") or {}) if isinstance(entry, Mapping) else {}
        meta = {k: v for k, v in meta.items() if k not in _RESERVED}
        tree = entry.get("treename", treename) if isinstance(entry, Mapping) else treename
        out[name] = {"files": {str(f): (t or tree) for f, t in files.items()}
                     if isinstance(files, Mapping) else {str(f): tree for f in files},
                     "metadata": meta}
    return out


# ----------------------------------------------------------------------------- reader errors
_READER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    uproot.exceptions.KeyInFileError,
    uproot.deserialization.DeserializationError,
)


def _exception_chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_reader_error(err: BaseException) -> bool:
    """True when ``err`` (or an exception it chains to) comes from reading the input file:
    an ``OSError``, a missing tree/branch, an uproot deserialization error, or any exception
    raised inside uproot (a corrupt basket raises ``ValueError`` from its decompressor).

    Errors of the processor's own code are not reader errors: skipping bad files never hides
    an analysis bug.
    """
    for e in _exception_chain(err):
        if isinstance(e, _READER_ERRORS):
            return True
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("uproot"):
            return True
    return False


def _is_dead_worker(err: BaseException) -> bool:
    """A process pool lost a worker (``BrokenProcessPool``, loky's ``TerminatedWorkerError``)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(err, BrokenProcessPool) or type(err).__name__ == "TerminatedWorkerError"


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# ----------------------------------------------------------------------------- planning
# (file, tree, size, mtime) -> metadata of files already opened by this process. Reading a
# TTree's metadata costs ~0.1-0.3 s for a NanoAOD-sized tree; coffea's Runner caches it too.
_METADATA_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}
_METADATA_CACHE_SIZE = 100_000


def _cache_key(filename: str, treename: str) -> tuple[Any, ...]:
    try:  # local file: a rewritten file gets a new key
        st = os.stat(filename)
        return (filename, treename, st.st_size, st.st_mtime_ns)
    except OSError:  # remote (root://, https://) or missing: the name alone
        return (filename, treename)


def _inspect_file(item: tuple[str, str, str], timeout: int | None = 60) -> dict[str, Any]:
    """Open one file and return its entry count and UUID, or the error that stopped it."""
    _, filename, treename = item
    key = _cache_key(filename, treename)
    if key in _METADATA_CACHE:
        return _METADATA_CACHE[key]
    try:
        with uproot.open({filename: None}, timeout=timeout) as file:
            tree = file[treename]
            info = {"entries": int(tree.num_entries), "uuid": file.file.fUUID, "error": None}
    except Exception as err:  # noqa: BLE001 -- every failure is reported per file, not raised here
        return {"entries": None, "uuid": b"", "error": _describe(err)}  # never cached
    if len(_METADATA_CACHE) >= _METADATA_CACHE_SIZE:
        _METADATA_CACHE.clear()
    _METADATA_CACHE[key] = info
    return info


def _map(fn: Any, items: list[Any], *, executor: str, client: Any, workers: int) -> list[Any]:
    """``[fn(i) for i in items]`` on the run's executor (the metadata pass)."""
    if not items:
        return []
    if executor == "dask":
        return client.gather(client.map(fn, items, pure=False))
    if executor == "futures" and workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            return list(pool.map(fn, items))
    return [fn(i) for i in items]


@dataclasses.dataclass
class _Plan:
    files: list[dict[str, Any]]
    chunks: list[WorkItem]


def _plan(fileset: dict[str, Any], *, chunksize: int, maxchunks: int | None,
          align_clusters: bool, executor: str, client: Any, workers: int) -> _Plan:
    """One metadata pass over every file, then coffea's own chunking (``FileMeta.chunks``)."""
    items = [(ds, f, t) for ds, entry in fileset.items() for f, t in entry["files"].items()]
    cached = {i: _METADATA_CACHE.get(_cache_key(f, t)) for i, (_, f, t) in enumerate(items)}
    todo = [item for i, item in enumerate(items) if cached[i] is None]
    fetched = iter(_map(_inspect_file, todo, executor=executor, client=client,
                        workers=workers))
    infos = [cached[i] if cached[i] is not None else next(fetched) for i in range(len(items))]
    for (_, f, t), info in zip(items, infos, strict=True):
        if info["error"] is None:
            _METADATA_CACHE[_cache_key(f, t)] = info
    files: list[dict[str, Any]] = []
    chunks: list[WorkItem] = []
    per_dataset: dict[str, int] = {}
    for (ds, f, t), info in zip(items, infos, strict=True):
        record = {"dataset": ds, "file": f, "treename": t, "entries": info["entries"],
                  "uuid": str(uuid.UUID(bytes=info["uuid"])) if info["uuid"] else None,
                  "error": info["error"], "planned": []}
        files.append(record)
        if info["error"] is not None:
            continue
        meta = dict(fileset[ds]["metadata"])
        meta.update(numentries=info["entries"], uuid=info["uuid"])
        if align_clusters:  # a second, rare open: only when cluster alignment is asked
            with uproot.open({f: None}) as file:
                meta["clusters"] = list(file[t].common_entry_offsets())
        fm = FileMeta(ds, f, t, meta)
        for chunk in fm.chunks(chunksize, align_clusters):
            if maxchunks is not None and per_dataset.get(ds, 0) >= maxchunks:
                break
            per_dataset[ds] = per_dataset.get(ds, 0) + 1
            chunks.append(chunk)
            record["planned"].append((chunk.entrystart, chunk.entrystop))
    return _Plan(files, chunks)


# ----------------------------------------------------------------------------- provenance
def _onnx_scorers(obj: Any) -> list[Any]:
    """Attributes of a processor that look like ONNX scorers (a ``model_path`` and a
    ``provider``), found by duck typing so any scorer class is recorded."""
    found = []
    for value in getattr(obj, "__dict__", {}).values():
        if hasattr(type(value), "provider") and hasattr(value, "model_path"):
            found.append(value)
    return found


class _Provenance(processor.ProcessorABC):
    """Wraps a processor so each chunk also returns where its events came from.

    Output of one chunk: ``{"out": inner output, "chunks": {(dataset, file): {(start, stop):
    [("computed", n_events)]}}, "errors": {...}, "providers": {provider: n_events}}``. Lists
    concatenate when coffea accumulates, so a chunk counted twice shows up as two records.
    """

    def __init__(self, inner: processor.ProcessorABC, *, skip_reader_errors: bool,
                 retries: int) -> None:
        self.inner = inner
        self.skip_reader_errors = skip_reader_errors
        self.retries = retries

    def process(self, events: Any) -> dict[str, Any]:
        meta = events.metadata
        key = (meta["dataset"], meta["filename"])
        span = (int(meta["entrystart"]), int(meta["entrystop"]))
        for attempt in range(self.retries + 1):
            try:
                out = self.inner.process(events)
                break
            except Exception as err:
                if not (self.skip_reader_errors and is_reader_error(err)):
                    raise
                if attempt == self.retries:
                    # reported in run_info["skipped"]; the run goes on (caller allowed it)
                    return {"errors": {key: {span: [_describe(err)]}}}
        n = len(events)
        providers: dict[str, int] = {}
        for scorer in _onnx_scorers(self.inner):
            providers[str(scorer.provider)] = providers.get(str(scorer.provider), 0) + n
        return {"out": out, "chunks": {key: {span: [("computed", n)]}}, "providers": providers}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        if "out" in accumulator and hasattr(self.inner, "postprocess"):
            result = self.inner.postprocess(accumulator["out"])
            if result is not None:
                accumulator["out"] = result
        return accumulator


def _versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            found[name] = importlib_metadata.version(name)
    found["python"] = platform.python_version()
    return found


def _model_paths(proc: Any) -> list[str]:
    paths = []
    model = getattr(proc, "model", None)
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        paths.append(str(Path(model).resolve()))
    for scorer in _onnx_scorers(proc):
        path = str(Path(scorer.model_path).resolve())
        if path not in paths:
            paths.append(path)
    return paths


def _models(proc: Any) -> dict[str, str]:
    from coffea_ad.inference.contract import file_sha256

    return {path: file_sha256(path) for path in _model_paths(proc)}


def _reconcile(plan: _Plan, chunks: Mapping[Any, Any], errors: Mapping[Any, Any], *,
               skipbadfiles: bool) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Compare planned chunks with the chunk records; return per-file records, the
    skips (allowed when ``skipbadfiles``) and the problems (never allowed)."""
    files: list[dict[str, Any]] = []
    skipped: list[str] = []
    problems: list[str] = []
    for rec in plan.files:
        key = (rec["dataset"], rec["file"])
        done = dict(chunks.get(key, {}))
        errs = dict(errors.get(key, {}))
        out = {k: v for k, v in rec.items() if k != "planned"}
        out.update(entries_planned=sum(b - a for a, b in rec["planned"]),
                   chunks_planned=len(rec["planned"]), entries_processed=0, chunks_processed=0,
                   chunks_from_checkpoint=0, skipped_chunks=[])
        if rec["error"] is not None:
            skipped.append(f"{rec['file']} (dataset {rec['dataset']}): could not be opened: "
                           f"{rec['error']}")
        for span in rec["planned"]:
            records = done.pop(span, [])
            if len(records) == 1 and records[0][1] == span[1] - span[0]:
                out["entries_processed"] += records[0][1]
                out["chunks_processed"] += 1
                out["chunks_from_checkpoint"] += records[0][0] == "checkpoint"
            elif not records:
                why = "; ".join(errs.get(span, [])) or "no output (the chunk task failed)"
                out["skipped_chunks"].append({"entrystart": span[0], "entrystop": span[1],
                                              "error": why})
                skipped.append(f"{rec['file']} (dataset {rec['dataset']}) entries "
                               f"[{span[0]}, {span[1]}): {why}")
            else:
                problems.append(f"{rec['file']} (dataset {rec['dataset']}) entries "
                                f"[{span[0]}, {span[1]}): expected one chunk of "
                                f"{span[1] - span[0]} events, found records {records}")
        for span, records in done.items():
            problems.append(f"{rec['file']} (dataset {rec['dataset']}): unplanned chunk "
                            f"{span} in the output, records {records}")
        out["complete"] = (rec["error"] is None and not out["skipped_chunks"]
                           and out["entries_processed"] == out["entries"])
        files.append(out)
    known = {(r["dataset"], r["file"]) for r in plan.files}
    problems += [f"{k[1]} (dataset {k[0]}): output from a file not in the fileset"
                 for k in chunks if k not in known]
    if not skipbadfiles:
        problems = skipped + problems
    return files, skipped, problems


# ----------------------------------------------------------------------------- checkpoints
def _simple(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_simple(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _simple(v) for k, v in value.items())
    return False


def _contracts(proc: Any) -> dict[str, str | None]:
    """sha256 of each model's sidecar contract (feature order, scaling, padding change the
    inputs a model sees as much as its weights do)."""
    from coffea_ad.inference.contract import file_sha256, sidecar_path

    out: dict[str, str | None] = {}
    for path in _model_paths(proc):
        side = sidecar_path(path)
        out[path] = file_sha256(side) if side.is_file() else None
    return out


def _plain(obj: Any, *, private: bool = True) -> dict[str, Any]:
    """Plain attributes of ``obj`` (numbers, strings and containers of them) as JSON data."""
    params = {k: v for k, v in sorted(getattr(obj, "__dict__", {}).items())
              if (private or not k.startswith("_")) and _simple(v)}
    return json.loads(json.dumps(params, default=str, allow_nan=True))


def processor_fingerprint(proc: Any) -> dict[str, Any]:
    """Everything that changes a chunk's result: the processor's class and plain attributes,
    its scorers' settings (``nonfinite``, ``jets``, ``batch_size``...), the sha256 of its
    model files and of their contracts, and the package versions (coffea-ad, coffea,
    onnxruntime, ...)."""
    cls = type(proc)
    # a scorer's private attributes hold counters that change while it runs
    scorers = {str(Path(s.model_path).resolve()): _plain(s, private=False)
               for s in _onnx_scorers(proc)}
    return {"class": f"{cls.__module__}.{cls.__qualname__}",
            "params": _plain(proc),
            "scorers": scorers,
            "models": _models(proc),
            "contracts": _contracts(proc),
            "versions": _versions()}


class ChunkCheckpointer(CheckpointerABC):
    """Saves each chunk's output under ``checkpoint_dir`` and reloads it when the same chunk
    of the same file is processed again by the same processor configuration.

    Unlike coffea's ``SimpleCheckpointer`` the path holds a fingerprint of the processor
    configuration (a changed threshold or model never reuses stale outputs) and the file name
    (two copies of a file share a UUID), and files are written to a temporary name then
    renamed, so a run killed mid-write leaves no truncated checkpoint.

    Checkpoints are coffea outputs (cloudpickle + lz4, like ``coffea.util.save``): only resume
    from a directory you wrote. Remote paths (``root://``, ``s3://``) go through fsspec.

    Args:
        checkpoint_dir: folder (or fsspec URL) shared by the client and all workers.
        fingerprint: short hash of the processor configuration (see
            :func:`processor_fingerprint`).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike[str], fingerprint: str) -> None:
        import fsspec

        self.fs, root = fsspec.url_to_fs(str(checkpoint_dir))
        self.root = f"{root.rstrip('/')}/{fingerprint}"

    def filepath(self, metadata: Mapping[str, Any]) -> str:
        """Path of the checkpoint of one chunk."""
        name = hashlib.sha256(str(metadata["filename"]).encode()).hexdigest()[:16]
        return (f"{self.root}/{metadata['dataset']}/{name}-{metadata['fileuuid']}/"
                f"{metadata['treename']}/{metadata['entrystart']}-{metadata['entrystop']}.coffea")

    def load(self, metadata: Any, processor_instance: Any) -> Any:
        path = self.filepath(metadata)
        if not self.fs.exists(path):
            return None
        try:
            with self.fs.open(path, "rb", compression="lz4") as fin:
                output = cloudpickle.load(fin)
        except Exception:  # noqa: BLE001 -- an unreadable checkpoint is recomputed, not trusted
            return None
        # re-tag the chunk records so run_info counts chunks resumed from checkpoints
        chunks = output.get("out", {}).get("chunks", {})
        for spans in chunks.values():
            for span, records in spans.items():
                spans[span] = [("checkpoint", n) for _, n in records]
        return output

    def save(self, output: Any, metadata: Any, processor_instance: Any) -> None:
        if output.get("out", {}).get("errors"):
            return  # a chunk skipped as unreadable is retried by the next run
        path = self.filepath(metadata)
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb", compression="lz4") as fout:
            cloudpickle.dump(output, fout)
        self.fs.mv(tmp, path)  # a rename on local disks: atomic, no half-written checkpoint


def _checkpointer(checkpoint_dir: str | os.PathLike[str] | None, proc: Any
                  ) -> tuple[ChunkCheckpointer | None, dict[str, Any] | None]:
    if checkpoint_dir is None:
        return None, None
    fp = processor_fingerprint(proc)
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    ckpt = ChunkCheckpointer(checkpoint_dir, digest)
    ckpt.fs.makedirs(ckpt.root, exist_ok=True)
    with ckpt.fs.open(f"{ckpt.root}/processor.json", "w") as fout:
        fout.write(json.dumps(fp, indent=2, sort_keys=True) + "\n")
    return ckpt, {"dir": str(checkpoint_dir), "fingerprint": digest, "processor": fp}


# ----------------------------------------------------------------------------- Dask
@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    workers: int = 2,
    threads: int = 1,
    worker_resources: Mapping[str, float] | None = None,
    memory_limit: str | float | None = "auto",
) -> Iterator[Any]:
    """A ``distributed.Client``: attached to ``scheduler`` when given, else on a new
    ``LocalCluster`` of ``workers`` processes x ``threads`` threads on loopback.

    Args:
        scheduler: a scheduler address (``tcp://host:8786``) or the path of a scheduler JSON
            file (``dask scheduler --scheduler-file``, dask-jobqueue, HPC launchers).
        workers, threads: size of the LocalCluster (ignored when attaching).
        worker_resources: abstract resources every local worker declares, e.g. ``{"GPU": 1}``
            on a one-GPU machine; tasks annotated with ``resources`` only run where they fit.
        memory_limit: per-worker memory limit of the LocalCluster.

    Returns:
        A context manager yielding the client; a cluster it started is closed on exit.
    """
    distributed = require("distributed", purpose="the Dask executor")
    if scheduler:
        if scheduler.endswith(".json") and Path(scheduler).is_file():
            client = distributed.Client(scheduler_file=scheduler)
        else:
            client = distributed.Client(scheduler)
        with client:
            yield client
        return
    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        resources=dict(worker_resources) if worker_resources else None,
        memory_limit=memory_limit,
    ) as cluster, distributed.Client(cluster) as client:
        yield client


class _AnnotatedDaskExecutor(processor.DaskExecutor):
    """coffea's DaskExecutor with Dask annotations (e.g. ``resources={"GPU": 1}``) on the
    chunk tasks and their merges; the metadata pass is not annotated, so it runs anywhere."""

    def __init__(self, *args: Any, annotations: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.annotations = dict(annotations or {})

    def copy(self, **kwargs: Any) -> _AnnotatedDaskExecutor:
        new = super().copy(**kwargs)
        new.annotations = dict(self.annotations)
        return new

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        import dask

        if not self.annotations:
            return super().__call__(items, function, accumulator)
        with dask.annotate(**self.annotations):
            return super().__call__(items, function, accumulator)


class _IterativeExecutor(processor.IterativeExecutor):
    """coffea's IterativeExecutor whose ``status=False`` really hides the progress bar
    (coffea 2026.9 passes ``disable`` to rich as a task field, which rich ignores)."""

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        if self.status or len(items) == 0:
            return super().__call__(items, function, accumulator)
        return processor.accumulate(map(function, items), accumulator), 0


# ----------------------------------------------------------------------------- run
def run_processor(
    fileset: Mapping[str, Any] | str | Path,
    processor_instance: processor.ProcessorABC,
    *,
    executor: Executor = "dask",
    workers: int = 2,
    threads: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    chunksize: int = 100_000,
    maxchunks: int | None = None,
    skipbadfiles: bool = False,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int = 3,
    align_clusters: bool = False,
    treename: str = "Events",
    schema: Any = PFNanoAODSchema,
) -> dict[str, Any]:
    """Run ``processor_instance`` over ``fileset`` and account for every entry.

    Args:
        fileset: coffea dataset format (``{dataset: {"files": {path: tree} | [paths],
            "metadata": {...}}}``) or the path of its JSON.
        processor_instance: a coffea ``ProcessorABC`` whose ``process`` returns a dict.
        executor: ``"iterative"`` (this process), ``"futures"`` (a pool of ``workers``
            processes), ``"dask"`` (``client`` if given, else ``scheduler``, else a new
            LocalCluster of ``workers`` x ``threads``), or ``"dask-awkward"``
            (:func:`apply_processor`; the processor must accept dask-awkward events).
        chunksize: target entries per chunk (coffea evens chunks out within a file).
        maxchunks: at most this many chunks per dataset (quick tests); the run_info then
            says the files were not processed completely, which is not an error.
        skipbadfiles: files that cannot be opened and chunks whose reading fails
            (:func:`is_reader_error`) are skipped, reported in ``run_info["skipped"]`` and by a
            :class:`SkippedFilesWarning`; without it they fail the run.
        progress: show coffea's progress bar.
        checkpoint_dir: save every chunk's output there and reuse saved chunks, so an
            interrupted run resumes without redoing finished chunks (a shared folder when the
            workers are on other machines). See :class:`ChunkCheckpointer`.
        resources: Dask resources each chunk task needs, e.g. ``{"GPU": 1}`` so ONNX inference
            lands on workers started with ``--resources GPU=1``.
        retries: attempts after a failed chunk (Dask task retries; coffea's own retries for
            the other executors). A killed worker's tasks are rescheduled by Dask itself.
        align_clusters: cut chunks at ROOT cluster boundaries.
        treename: tree read from files whose fileset entry does not name one.
        schema: NanoEvents schema class.

    Returns:
        The processor's accumulated output (a dict) with ``run_info`` added: ``files`` (per
        file: entries held, planned, processed, chunks, errors), ``skipped``, ``complete``,
        ``versions``, ``models`` (path → sha256), ``onnx_providers`` (provider → events),
        ``fileset``, ``executor`` settings, ``checkpoint`` and ``wall_s``.

    Raises:
        IncompleteRunError: entries planned and processed differ (a bad file or chunk when
            skipping was not allowed, a chunk counted twice, a chunk that saw a different
            number of events than its range).
        ValueError: unknown executor, or no file of the fileset could be opened.
    """
    if executor == "dask-awkward":
        return apply_processor(fileset, processor_instance, client=client, scheduler=scheduler,
                               workers=workers, threads=threads, chunksize=chunksize,
                               skipbadfiles=skipbadfiles, treename=treename, schema=schema)
    if executor not in ("iterative", "futures", "dask"):
        raise ValueError("executor must be 'iterative', 'futures', 'dask' or 'dask-awkward', "
                         f"got {executor!r}")
    if executor == "dask" and client is None:
        with dask_client(scheduler, workers=workers, threads=threads) as new_client:
            return run_processor(fileset, processor_instance, executor="dask",
                                 client=new_client, scheduler=scheduler,
                                 chunksize=chunksize, maxchunks=maxchunks,
                                 skipbadfiles=skipbadfiles, progress=progress,
                                 checkpoint_dir=checkpoint_dir, resources=resources,
                                 retries=retries, align_clusters=align_clusters,
                                 treename=treename, schema=schema)
    t0 = time.perf_counter()
    fileset = _runner_fileset(load_fileset(fileset), treename)
    plan = _plan(fileset, chunksize=chunksize, maxchunks=maxchunks,
                 align_clusters=align_clusters, executor=executor, client=client,
                 workers=workers)
    unreadable = [f"{r['file']}: {r['error']}" for r in plan.files if r["error"] is not None]
    if unreadable and not skipbadfiles:
        raise IncompleteRunError(
            f"{len(unreadable)} of {len(plan.files)} input files could not be opened "
            "(pass skipbadfiles=True / --skip-bad-files to skip them):\n  "
            + "\n  ".join(unreadable), run_info={"files": plan.files})
    if not plan.chunks:
        raise ValueError(f"no file of the fileset could be opened: {unreadable}")

    if executor == "iterative":
        ex: processor.ExecutorBase = _IterativeExecutor(status=progress, retries=retries)
    elif executor == "futures":
        ex = processor.FuturesExecutor(workers=workers, status=progress, retries=retries)
    else:
        ex = _AnnotatedDaskExecutor(client=client, status=progress, retries=retries,
                                    annotations={"resources": dict(resources)}
                                    if resources else None)
    ckpt, ckpt_info = _checkpointer(checkpoint_dir, processor_instance)
    runner = processor.Runner(executor=ex, schema=schema, chunksize=chunksize,
                              skipbadfiles=(OSError,) if skipbadfiles else False,
                              checkpointer=ckpt, align_clusters=align_clusters)
    # reader errors are retried inside the wrapper when skipping is allowed (a transient
    # xrootd failure should not drop a chunk); other errors by the executor (coffea / Dask)
    wrapper = _Provenance(processor_instance, skip_reader_errors=skipbadfiles,
                          retries=retries)
    with warnings.catch_warnings():
        # coffea warns per retry/skip in this process; our report below replaces it
        warnings.filterwarnings("ignore", message="(Performed attempt|Skipping bad file)")
        try:
            wrapped = runner.run(plan.chunks, wrapper)
        except Exception as err:
            if not any(_is_dead_worker(e) for e in _exception_chain(err)):
                raise
            raise IncompleteRunError(
                f"a worker process of the {executor} executor died mid-run (killed, or out "
                f"of memory: {_describe(err)}); the outputs of the chunks it had finished "
                "are lost" + (", those saved in the checkpoint are reused by a rerun"
                              if ckpt_info else "; rerun, with --checkpoint to keep the "
                              "chunks that finish"),
                run_info={"files": plan.files, "chunks": len(plan.chunks),
                          "checkpoint": ckpt_info, "error": _describe(err)},
            ) from err
    acc = wrapped.get("out") or {}
    output = acc.get("out")
    files, skipped, problems = _reconcile(plan, acc.get("chunks", {}), acc.get("errors", {}),
                                          skipbadfiles=skipbadfiles)
    info = {
        "files": files,
        "skipped": skipped,
        "complete": all(f["complete"] for f in files),
        "entries": sum(f["entries"] or 0 for f in files),
        "entries_processed": sum(f["entries_processed"] for f in files),
        "chunks": len(plan.chunks),
        "chunks_from_checkpoint": sum(f["chunks_from_checkpoint"] for f in files),
        "versions": _versions(),
        "models": _models(processor_instance),
        "contracts": _contracts(processor_instance),
        "onnx_providers": dict(acc.get("providers", {})),
        "fileset": fileset,
        "executor": {"name": executor, "workers": workers, "threads": threads,
                     "scheduler": scheduler if executor == "dask" else None,
                     "chunksize": chunksize, "maxchunks": maxchunks,
                     "align_clusters": align_clusters, "skipbadfiles": skipbadfiles,
                     "retries": retries, "resources": dict(resources or {})},
        "checkpoint": ckpt_info,
        "processor": f"{type(processor_instance).__module__}."
                     f"{type(processor_instance).__qualname__}",
        "wall_s": time.perf_counter() - t0,
    }
    if problems:
        raise IncompleteRunError(
            f"entries processed differ from entries held in {len(problems)} place(s):\n  "
            + "\n  ".join(problems), run_info=info, output=output)
    if output is None:
        raise IncompleteRunError("no chunk produced output; every chunk was skipped:\n  "
                                 + "\n  ".join(skipped), run_info=info)
    if not isinstance(output, MutableMapping):
        raise TypeError("run_processor needs a processor whose output is a dict (to add "
                        f"'{RUN_INFO_KEY}'), found {type(output).__name__}")
    if skipped:
        warnings.warn(f"skipped unreadable input ({len(skipped)}):\n  " + "\n  ".join(skipped),
                      SkippedFilesWarning, stacklevel=2)
    output[RUN_INFO_KEY] = info
    return output


# ----------------------------------------------------------------------------- dask-awkward
def apply_processor(
    fileset: Mapping[str, Any] | str | Path,
    processor_instance: processor.ProcessorABC,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int = 2,
    threads: int = 1,
    chunksize: int = 100_000,
    skipbadfiles: bool = False,
    treename: str = "Events",
    schema: Any = PFNanoAODSchema,
) -> dict[str, Any]:
    """The dask-awkward path: ``coffea.dataset_tools.preprocess`` + ``apply_to_fileset`` +
    one ``dask.compute``, outputs of all datasets accumulated like :func:`run_processor`.

    The processor's ``process`` receives dask-awkward events and must return dask
    collections (``hist.dask`` histograms, dask-awkward sums) or plain values.

    Args:
        fileset, processor_instance, chunksize, skipbadfiles, treename, schema: as in
            :func:`run_processor` (``chunksize`` is the preprocess ``step_size``).
        client, scheduler, workers, threads: the Dask cluster, as in :func:`run_processor`.

    Returns:
        The accumulated output with ``run_info`` (per file: entries held, steps planned,
        and for each step whether it was read without error).

    Raises:
        IncompleteRunError: a file could not be opened, or a step failed, when skipping was
            not allowed.
    """
    dask = require("dask", purpose="the dask-awkward path")
    require("dask_awkward", purpose="the dask-awkward path")
    from coffea.dataset_tools import apply_to_fileset, preprocess
    from coffea.processor import accumulate

    if client is None:
        with dask_client(scheduler, workers=workers, threads=threads) as new_client:
            return apply_processor(fileset, processor_instance, client=new_client,
                                   chunksize=chunksize, skipbadfiles=skipbadfiles,
                                   treename=treename, schema=schema)
    t0 = time.perf_counter()
    fs = _runner_fileset(load_fileset(fileset), treename)
    spec = {ds: {"files": {f: {"object_path": t} for f, t in e["files"].items()},
                 "metadata": e["metadata"] or None} for ds, e in fs.items()}
    # preprocess never raises on an unreadable file here: we collect and report them below.
    # Its tiny graph trips dask-awkward 2025.3's optimizer under dask 2026.8 ("Cannot fuse
    # tasks with multiple outputs"); column optimization is pointless there anyway.
    with warnings.catch_warnings(), dask.config.set({"awkward.optimization.enabled": False}):
        warnings.filterwarnings("ignore", message=".*plain dict fileset", category=UserWarning)
        available, updated = preprocess(spec, step_size=chunksize, skip_bad_files=True,
                                        file_exceptions=_READER_ERRORS, save_form=False,
                                        scheduler=client, allow_empty_datasets=True)
    files, unreadable = [], []
    for ds, entry in updated.items():
        for f, finfo in entry["files"].items():
            ok = finfo.get("num_entries") is not None and finfo.get("steps") is not None
            rec = {"dataset": ds, "file": f, "treename": finfo["object_path"],
                   "entries": finfo.get("num_entries") if ok else None,
                   "uuid": finfo.get("uuid"), "steps": finfo.get("steps") or [],
                   "error": None if ok else "could not be opened (preprocess)"}
            if not ok:
                rec["error"] = _describe_open_error(f, finfo["object_path"])
                unreadable.append(f"{f} (dataset {ds}): {rec['error']}")
            files.append(rec)
    if unreadable and not skipbadfiles:
        raise IncompleteRunError(f"{len(unreadable)} input files could not be opened:\n  "
                                 + "\n  ".join(unreadable), run_info={"files": files})
    available = {ds: e for ds, e in available.items()
                 if any(f.get("steps") for f in e["files"].values())}  # 0-entry files: no step
    # uproot's per-partition report: a partition that cannot be read gives empty events and
    # a row naming the file, entry range and exception, so the ledger below counts what the
    # partitions actually read (and a bad chunk is skipped or reported, never a crash)
    outputs, reports = apply_to_fileset(
        processor_instance, available, schemaclass=schema,
        uproot_options={"allow_read_errors_with_report": _READER_ERRORS},
    ) if available else ({}, {})
    # column projection stays on (only the branches the processor touches are read); the
    # layer-chain fusion of dask-awkward 2025.3 fails under dask 2026.8 on any graph where
    # one array feeds two operations ("Cannot fuse tasks with multiple outputs")
    with dask.config.set({"awkward.optimization.which": ["columns"]}):
        computed, computed_reports = dask.compute(outputs, reports, scheduler=client)
    read, failed = _partition_ledger(computed_reports)
    for rec in files:
        key = (rec["dataset"], rec["file"])
        rec["entries_processed"] = read.get(key, 0)
        rec["skipped_chunks"] = failed.get(key, [])
        rec["complete"] = rec["error"] is None and rec["entries_processed"] == rec["entries"]
        unreadable += [f"{rec['file']} (dataset {rec['dataset']}) entries "
                       f"[{c['entrystart']}, {c['entrystop']}): {c['error']}"
                       for c in rec["skipped_chunks"]]
    if not computed:
        raise IncompleteRunError("no file of the fileset has an entry to process:\n  "
                                 + "\n  ".join(unreadable or [r["file"] for r in files]),
                                 run_info={"files": files})
    output = accumulate([computed[ds] for ds in sorted(computed)])
    if isinstance(output, MutableMapping):
        # as the Runner does: the processor turns what it computed lazily into its output
        output = processor_instance.postprocess(output)
    if any(r["skipped_chunks"] for r in files) and not skipbadfiles:
        raise IncompleteRunError(
            f"{len(unreadable)} chunk(s) could not be read (pass skipbadfiles=True / "
            "--skip-bad-files to skip them):\n  " + "\n  ".join(unreadable),
            run_info={"files": files}, output=output)
    info = {"files": files, "skipped": unreadable,
            "complete": all(r["complete"] for r in files),
            "entries": sum(r["entries"] or 0 for r in files),
            "entries_processed": sum(r["entries_processed"] for r in files),
            "versions": _versions(), "models": _models(processor_instance),
            "fileset": fs, "executor": {"name": "dask-awkward", "chunksize": chunksize,
                                        "skipbadfiles": skipbadfiles},
            "wall_s": time.perf_counter() - t0}
    if unreadable:
        warnings.warn(f"skipped unreadable input ({len(unreadable)}):\n  "
                      + "\n  ".join(unreadable), SkippedFilesWarning, stacklevel=2)
    if not isinstance(output, MutableMapping):
        raise TypeError("apply_processor needs a processor whose output is a dict, found "
                        f"{type(output).__name__}")
    output[RUN_INFO_KEY] = info
    return output


def _partition_ledger(reports: Mapping[str, Any]) -> tuple[dict[tuple[str, str], int],
                                                          dict[tuple[str, str], list]]:
    """Entries read per (dataset, file) and the partitions that failed, from uproot's
    ``allow_read_errors_with_report`` reports (one row per partition)."""
    import ast

    read: dict[tuple[str, str], int] = {}
    failed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for dataset, report in reports.items():
        for row in report.to_list():
            args = row["args"]  # repr()s: file, tree, entry start, entry stop, ...
            filename = str(ast.literal_eval(args[0]))
            start, stop = int(args[2]), int(args[3])
            key = (dataset, filename)
            if row["exception"] is None:
                read[key] = read.get(key, 0) + stop - start
            else:
                message = str(row["message"] or "").strip().splitlines()
                failed.setdefault(key, []).append(
                    {"entrystart": start, "entrystop": stop,
                     "error": f"{row['exception']}: {message[-1] if message else ''}"})
    return read, failed


def _describe_open_error(filename: str, treename: str) -> str:
    info = _inspect_file(("", filename, treename))
    return info["error"] or "preprocess could not read it (it opens from this process)"

