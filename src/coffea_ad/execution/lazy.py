"""The dask-awkward path: ``coffea.dataset_tools.preprocess`` + ``apply_to_fileset`` + one
``dask.compute``, with the same run record as the Runner path."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from coffea import processor
from coffea.nanoevents import PFNanoAODSchema

from coffea_ad._optional import require
from coffea_ad.execution.clients import dask_client
from coffea_ad.execution.planning import inspect_file
from coffea_ad.execution.provenance import (
    RUN_INFO_KEY,
    IncompleteRunError,
    run_record,
    warn_skipped,
)
from coffea_ad.execution.readers import READER_ERRORS
from coffea_ad.fileset import check_normalisation, load_fileset, runner_metadata

__all__ = ["apply_processor"]


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
    require("dask", purpose="the dask-awkward path")
    require("dask_awkward", purpose="the dask-awkward path")
    if client is None:
        with dask_client(scheduler, workers=workers, threads=threads) as new_client:
            return _apply(fileset, processor_instance, client=new_client, chunksize=chunksize,
                          skipbadfiles=skipbadfiles, treename=treename, schema=schema)
    return _apply(fileset, processor_instance, client=client, chunksize=chunksize,
                  skipbadfiles=skipbadfiles, treename=treename, schema=schema)


def _apply(fileset: Mapping[str, Any] | str | Path, processor_instance: processor.ProcessorABC,
           *, client: Any, chunksize: int, skipbadfiles: bool, treename: str, schema: Any
           ) -> dict[str, Any]:
    dask = require("dask", purpose="the dask-awkward path")
    from coffea.dataset_tools import apply_to_fileset, preprocess
    from coffea.processor import accumulate

    started = time.perf_counter()
    fs = runner_metadata(load_fileset(fileset, treename=treename))
    check_normalisation(fs, lumi_fb=getattr(processor_instance, "lumi_fb", None))
    spec = {ds: {"files": {f: {"object_path": t} for f, t in e["files"].items()},
                 "metadata": e["metadata"] or None} for ds, e in fs.items()}
    # preprocess never raises on an unreadable file here: we collect and report them below
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*plain dict fileset", category=UserWarning)
        available, updated = preprocess(spec, step_size=chunksize, skip_bad_files=True,
                                        file_exceptions=READER_ERRORS, save_form=False,
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
    available = {ds: e for ds, e in available.items() if e["files"]}
    outputs = apply_to_fileset(processor_instance, available, schemaclass=schema)
    # dask-awkward's optimizations (column projection: only the branches the processor
    # touches are read) run as configured by the user
    (computed,) = dask.compute(outputs, scheduler=client)
    output = accumulate([computed[ds] for ds in sorted(computed)])
    if isinstance(output, MutableMapping):
        # as the Runner does: the processor turns what it computed lazily into its output
        output = processor_instance.postprocess(output)
    for rec in files:
        rec["entries_processed"] = sum(b - a for a, b in rec["steps"]) if rec["error"] is None \
            else 0
        rec["complete"] = rec["error"] is None and rec["entries_processed"] == rec["entries"]
    info = run_record(files, unreadable, proc=processor_instance, fileset=fs,
                      executor={"name": "dask-awkward", "chunksize": chunksize,
                                "skipbadfiles": skipbadfiles}, started=started)
    warn_skipped(unreadable, stacklevel=4)  # points at the caller of apply_processor
    if not isinstance(output, MutableMapping):
        raise TypeError("apply_processor needs a processor whose output is a dict, found "
                        f"{type(output).__name__}")
    output[RUN_INFO_KEY] = info
    return dict(output) if not isinstance(output, dict) else output


def _describe_open_error(filename: str, treename: str) -> str:
    info = inspect_file(("", filename, treename))
    return info["error"] or "preprocess could not read it (it opens from this process)"

