"""Provenance of a run: which chunks really ran (and with which ONNX providers), compared with
the plan, plus versions, model hashes and settings in one run record (``run_info``)."""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from coffea import processor

from coffea_ad.errors import CoffeaADError
from coffea_ad.execution.memory import collect_before_chunk
from coffea_ad.execution.planning import Plan
from coffea_ad.execution.readers import describe, is_reader_error

__all__ = [
    "RUN_INFO_KEY",
    "IncompleteRunError",
    "SkippedFilesWarning",
    "model_hashes",
    "reconcile",
    "run_record",
    "scorers_of",
    "warn_skipped",
]

#: Key of the output dict that holds the provenance record of a run.
RUN_INFO_KEY = "run_info"

# Packages whose versions go into every run record.
_VERSIONED = ("coffea-ad", "coffea", "awkward", "uproot", "numpy", "hist", "onnxruntime",
              "onnxruntime-gpu", "dask", "distributed", "dask-awkward")


class IncompleteRunError(CoffeaADError, RuntimeError):
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


def scorers_of(obj: Any) -> list[Any]:
    """The ONNX scorers of a processor: its ``scorers`` mapping (every
    :class:`~coffea_ad.analysis.AnalysisProcessor` has one); for another processor, its
    attributes that look like scorers (a ``model_path`` and a ``provider``)."""
    declared = getattr(obj, "scorers", None)
    if isinstance(declared, Mapping):
        return list(declared.values())
    return [value for value in getattr(obj, "__dict__", {}).values()
            if hasattr(type(value), "provider") and hasattr(value, "model_path")]


class Provenance(processor.ProcessorABC):
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
        collect_before_chunk()
        for attempt in range(self.retries + 1):
            try:
                out = self.inner.process(events)
                break
            except Exception as err:
                if not (self.skip_reader_errors and is_reader_error(err)):
                    raise
                if attempt == self.retries:
                    # reported in run_info["skipped"]; the run goes on (caller allowed it)
                    return {"errors": {key: {span: [describe(err)]}}}
        n = len(events)
        providers: dict[str, int] = {}
        for scorer in scorers_of(self.inner):
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
    for scorer in scorers_of(proc):
        path = str(Path(scorer.model_path).resolve())
        if path not in paths:
            paths.append(path)
    return paths


def contract_hashes(proc: Any) -> dict[str, str | None]:
    """sha256 of each model's sidecar contract (feature order, scaling, padding change the
    inputs a model sees as much as its weights do)."""
    from coffea_ad.inference.contract import file_sha256, sidecar_path

    out: dict[str, str | None] = {}
    for path in _model_paths(proc):
        side = sidecar_path(path)
        out[path] = file_sha256(side) if side.is_file() else None
    return out


def model_hashes(proc: Any) -> dict[str, str]:
    from coffea_ad.inference.contract import file_sha256

    # the digest of the bytes the scorers carry (what the workers run), not of whatever is
    # at the path now: the file may be gone or replaced since the scorer was built
    carried = {str(Path(s.model_path).resolve()): s.model_sha256 for s in scorers_of(proc)
               if getattr(s, "model_sha256", None)}
    return {path: carried.get(path) or file_sha256(path) for path in _model_paths(proc)}


def reconcile(plan: Plan, chunks: Mapping[Any, Any], errors: Mapping[Any, Any], *,
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




def run_record(files: list[dict[str, Any]], skipped: list[str], *, proc: Any,
               fileset: Mapping[str, Any], executor: Mapping[str, Any], started: float,
               **extra: Any) -> dict[str, Any]:
    """The run record (``run_info``) both execution paths return.

    Args:
        files: per-file records, each with ``entries``, ``entries_processed``, ``complete``.
        skipped: one line per skipped file or chunk.
        proc: the processor (its class and model files are recorded).
        fileset: the fileset as run.
        executor: the executor settings.
        started: ``time.perf_counter()`` at the start of the run.
        extra: path-specific entries (chunk counts, providers, checkpoint).
    """
    cls = type(proc)
    record: dict[str, Any] = {
        "files": files,
        "skipped": skipped,
        "complete": all(f["complete"] for f in files),
        "entries": sum(f["entries"] or 0 for f in files),
        "entries_processed": sum(f["entries_processed"] for f in files),
        "versions": _versions(),
        "models": model_hashes(proc),
        "contracts": contract_hashes(proc),
        "fileset": dict(fileset),
        "executor": dict(executor),
    }
    record.update(extra)
    record["processor"] = f"{cls.__module__}.{cls.__qualname__}"
    record["wall_s"] = time.perf_counter() - started
    return record


def warn_skipped(skipped: list[str], *, stacklevel: int = 3) -> None:
    """One :class:`SkippedFilesWarning` listing what was skipped (nothing when empty);
    ``stacklevel`` counts from the caller of ``warn_skipped``."""
    if skipped:
        warnings.warn(f"skipped unreadable input ({len(skipped)}):\n  " + "\n  ".join(skipped),
                      SkippedFilesWarning, stacklevel=stacklevel + 1)
