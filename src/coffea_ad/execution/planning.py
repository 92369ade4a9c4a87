"""Planning a run: one metadata pass over every file (failures collected per file), then
coffea's own chunking."""

from __future__ import annotations

import dataclasses
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import uproot
from coffea.processor.executor import FileMeta, WorkItem

from coffea_ad.execution.readers import describe

__all__ = ["Plan", "inspect_file", "plan"]

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


def inspect_file(item: tuple[str, str, str], timeout: int | None = 60) -> dict[str, Any]:
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
        return {"entries": None, "uuid": b"", "error": describe(err)}  # never cached
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
class Plan:
    files: list[dict[str, Any]]
    chunks: list[WorkItem]


def plan(fileset: dict[str, Any], *, chunksize: int, maxchunks: int | None,
          align_clusters: bool, executor: str, client: Any, workers: int) -> Plan:
    """One metadata pass over every file, then coffea's own chunking (``FileMeta.chunks``)."""
    items = [(ds, f, t) for ds, entry in fileset.items() for f, t in entry["files"].items()]
    cached = {i: _METADATA_CACHE.get(_cache_key(f, t)) for i, (_, f, t) in enumerate(items)}
    todo = [item for i, item in enumerate(items) if cached[i] is None]
    fetched = iter(_map(inspect_file, todo, executor=executor, client=client,
                        workers=workers))
    infos: list[dict[str, Any]] = [c if (c := cached[i]) is not None else next(fetched)
                                   for i in range(len(items))]
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
    return Plan(files, chunks)


