"""Running processors: coffea ``processor.Runner`` on iterative, futures or Dask executors.

A Dask ``distributed.LocalCluster`` (on loopback) is the embedded default; give a scheduler
address to attach to an existing cluster (dask-jobqueue / dask-gateway sites).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from coffea import processor
from coffea.nanoevents import PFNanoAODSchema

from coffea_ad._optional import require

__all__ = ["dask_client", "load_fileset", "run_processor"]

Executor = Literal["iterative", "futures", "dask"]

# Keys coffea reserves in a dataset's metadata (it raises on them); we keep ours elsewhere.
_RESERVED = {"dataset", "filename", "treename", "metadata", "entrystart", "entrystop",
             "fileuuid", "numentries", "uuid", "clusters", "preload"}


def load_fileset(fileset: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Read a fileset (coffea dataset format, a dict or a JSON path) into a plain dict."""
    if isinstance(fileset, (str, Path)):
        path = Path(fileset)
        if not path.is_file():
            raise FileNotFoundError(f"fileset JSON {path} does not exist")
        fileset = json.loads(path.read_text())
    return {name: dict(entry) for name, entry in fileset.items()}


def _runner_fileset(fileset: Mapping[str, Any]) -> dict[str, Any]:
    """The fileset as coffea's Runner takes it: files + flat, non-reserved metadata."""
    out: dict[str, Any] = {}
    for name, entry in fileset.items():
        files = entry["files"] if isinstance(entry, Mapping) else entry
        meta = dict(entry.get("metadata") or {}) if isinstance(entry, Mapping) else {}
        meta = {k: v for k, v in meta.items() if k not in _RESERVED}
        out[name] = {"files": dict(files) if isinstance(files, Mapping) else
                     {f: "Events" for f in files}, "metadata": meta}
    return out


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, *, workers: int = 2, threads: int = 1
) -> Iterator[Any]:
    """A ``distributed.Client``: attached to ``scheduler`` when given, else on a new
    ``LocalCluster`` of ``workers`` processes × ``threads`` threads on loopback."""
    distributed = require("distributed", purpose="the Dask executor")
    if scheduler:
        with distributed.Client(scheduler) as client:
            yield client
        return
    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        yield client


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
) -> Any:
    """Run ``processor_instance`` over ``fileset`` with coffea's ``Runner`` (NanoEvents,
    ``PFNanoAODSchema``, virtual mode).

    Args:
        executor: ``"iterative"`` (one process), ``"futures"`` (a process pool of ``workers``)
            or ``"dask"`` (``client`` if given, else ``scheduler``, else a new LocalCluster).
        chunksize: entries per chunk.
        skipbadfiles: skip files that fail to open instead of failing the run.

    Returns:
        The processor's accumulated output.
    """
    fileset = _runner_fileset(load_fileset(fileset))
    kwargs = dict(schema=PFNanoAODSchema, chunksize=chunksize, maxchunks=maxchunks,
                  skipbadfiles=skipbadfiles)
    if executor == "iterative":
        ex = processor.IterativeExecutor(status=progress)
    elif executor == "futures":
        ex = processor.FuturesExecutor(workers=workers, status=progress)
    elif executor == "dask":
        if client is None:
            with dask_client(scheduler, workers=workers, threads=threads) as new_client:
                return run_processor(fileset, processor_instance, executor="dask",
                                     client=new_client, chunksize=chunksize,
                                     maxchunks=maxchunks, skipbadfiles=skipbadfiles,
                                     progress=progress)
        ex = processor.DaskExecutor(client=client, status=progress)
    else:
        raise ValueError(f"executor must be 'iterative', 'futures' or 'dask', got {executor!r}")
    runner = processor.Runner(executor=ex, **kwargs)
    return runner(fileset, processor_instance, treename="Events")
