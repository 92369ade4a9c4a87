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
from coffea_ad.errors import WrongTypeError
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
    available = {ds: e for ds, e in available.items()
                 if any(f.get("steps") for f in e["files"].values())}  # 0-entry files: no step
    # uproot's per-partition report: a partition that cannot be read gives empty events and
    # a row naming the file, entry range and exception, so the ledger below counts what the
    # partitions actually read (and a bad chunk is skipped or reported, never a crash)
    outputs, reports = apply_to_fileset(
        processor_instance, available, schemaclass=schema,
        uproot_options={"allow_read_errors_with_report": READER_ERRORS},
    ) if available else ({}, {})
    # dask-awkward's optimizations (column projection: only the branches the processor
    # touches are read) run as configured by the user
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
    info = run_record(files, unreadable, proc=processor_instance, fileset=fs,
                      executor={"name": "dask-awkward", "chunksize": chunksize,
                                "skipbadfiles": skipbadfiles}, started=started)
    warn_skipped(unreadable, stacklevel=4)  # points at the caller of apply_processor
    if not isinstance(output, MutableMapping):
        raise WrongTypeError("apply_processor needs a processor whose output is a dict, found "
                        f"{type(output).__name__}")
    output[RUN_INFO_KEY] = info
    return dict(output) if not isinstance(output, dict) else output


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
    info = inspect_file(("", filename, treename))
    return info["error"] or "preprocess could not read it (it opens from this process)"

