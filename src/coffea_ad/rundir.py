"""A run directory (``coffea-ad run -o DIR``) written and read as one consistent set.

Layout::

    DIR/histograms.json   every histogram, hist's own UHI serialisation (no code runs on read)
    DIR/histograms.root   the same histograms sliced for ROOT tools (see histos.write_root)
    DIR/cutflow.json      cutflow, entries, sumw, non-finite score counts per dataset ...
    DIR/arrays.npz        per-dataset arrays (resonant processor), numpy without pickle
    DIR/histograms.coffea the whole output for coffea users (pickle: trusted input only)
    DIR/run.json          provenance, ``status``, and ``outputs``: sha256 of each file above

The files are written into a temporary folder beside ``DIR`` and renamed into place together
(:func:`coffea_ad.atomic.atomic_dir`), so ``DIR`` holds either the old set or the new one.
:func:`read_run_dir` checks every hash before reading anything, and never unpickles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.atomic import atomic_dir, atomic_write_text, refuse_existing
from coffea_ad.errors import InvalidOutputError, MissingFileError

__all__ = [
    "RUN_FILES",
    "check_writable",
    "read_run_dir",
    "to_json",
    "write_failed_run",
    "write_run_dir",
]

#: Files of a complete run directory besides run.json (arrays.npz only when there are arrays).
RUN_FILES = ("histograms.json", "histograms.root", "cutflow.json", "histograms.coffea")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):  # numpy scalars stay numbers, not strings
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def to_json(obj: Any) -> str:
    """JSON text of run records (numpy scalars as numbers, anything else as its str)."""
    return json.dumps(obj, indent=2, default=_default) + "\n"


def _sha256(path: Path) -> str:
    from coffea_ad.inference.contract import file_sha256

    return file_sha256(path)


def _hists_json(hists: Mapping[str, Any]) -> str:
    import uhi.io.json as uhi_json
    from hist.serialization import to_uhi

    return json.dumps({name: to_uhi(h) for name, h in hists.items()}, default=uhi_json.default)


def _arrays_npz(arrays: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    flat: dict[str, Any] = {}
    for dataset, cols in arrays.items():
        for name, col in cols.items():
            value = getattr(col, "value", col)  # coffea column_accumulator or plain array
            flat[f"{dataset}/{name}"] = np.asarray(value)
    with open(path, "wb") as fh:
        np.savez(fh, **flat)


def write_run_dir(outdir: str | os.PathLike[str], result: Mapping[str, Any],
                  info: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write a run's output and its record as one set (see the module docstring).

    Args:
        outdir: the run directory; refused if it exists unless ``overwrite``.
        result: the processor output without ``run_info`` (``hists``, optional ``arrays``,
            and JSON-able bookkeeping such as ``cutflow``).
        info: the run record; written to run.json with ``status`` and ``outputs`` added.
        overwrite: replace an existing directory (the old set stays until the new one is
            complete).

    Returns:
        ``outdir``.
    """
    from coffea.util import save

    from coffea_ad.histos import write_root

    outdir = Path(outdir)
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        hists = result.get("hists") or {}
        (tmp / "histograms.json").write_text(_hists_json(hists))
        write_root(hists, tmp / "histograms.root")
        meta = {k: v for k, v in result.items() if k not in ("hists", "arrays")}
        (tmp / "cutflow.json").write_text(to_json(meta))
        if result.get("arrays"):
            _arrays_npz(result["arrays"], tmp / "arrays.npz")
        save(dict(result), tmp / "histograms.coffea")
        outputs = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        record = {**info, "status": "complete", "outputs": outputs}
        (tmp / "run.json").write_text(to_json(record))
    return outdir


def write_failed_run(outdir: str | os.PathLike[str], info: Mapping[str, Any], error: str, *,
                     overwrite: bool = False) -> Path:
    """Record a run that failed: ``run.json`` with ``status: failed``, the error and what is
    known (files planned, processed). An existing directory is never replaced by a failure:
    the record then goes to ``DIR.failed.json`` beside it.

    Returns:
        The path of the failure record.
    """
    outdir = Path(outdir)
    record = to_json({**info, "status": "failed", "error": error, "outputs": {}})
    if outdir.exists():
        return atomic_write_text(outdir.with_name(outdir.name + ".failed.json"), record)
    with atomic_dir(outdir, overwrite=overwrite) as tmp:
        (tmp / "run.json").write_text(record)
    return outdir / "run.json"


def read_run_dir(outdir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a run directory after checking it is one consistent, complete set.

    Nothing here unpickles: histograms come from histograms.json (hist's serialisation),
    bookkeeping from cutflow.json, arrays from arrays.npz (``allow_pickle=False``).

    Returns:
        ``(result, info)``: ``result`` has ``hists``, the cutflow.json keys and ``arrays``
        (``{dataset: {name: numpy array}}``, if any); ``info`` is run.json.

    Raises:
        FileNotFoundError: no run.json in ``outdir``.
        InvalidOutputError: the run failed, a file is missing, or a file's sha256 differs from
            the one run.json records (files from different runs mixed).
    """
    import uhi.io.json as uhi_json
    from hist import Hist
    from hist.serialization import from_uhi

    outdir = Path(outdir)
    record_path = outdir / "run.json"
    if not record_path.is_file():
        raise MissingFileError(f"expected {record_path}, written by `coffea-ad run -o {outdir}`")
    try:
        info = json.loads(record_path.read_text())
    except ValueError as err:
        raise InvalidOutputError(f"{record_path} is not valid JSON: {err}") from err
    if info.get("status") == "failed":
        raise InvalidOutputError(
            f"{outdir} records a failed run ({info.get('error', 'no error recorded')}); "
            "expected a complete run: rerun `coffea-ad run`"
        )
    outputs = info.get("outputs")
    if not isinstance(outputs, Mapping) or "histograms.json" not in outputs:
        raise InvalidOutputError(
            f"{record_path} lists no output hashes (written by an older coffea-ad, or not by "
            "`coffea-ad run`); expected a run directory with histograms.json: rerun it"
        )
    for name, digest in outputs.items():
        path = outdir / name
        if not path.is_file():
            raise InvalidOutputError(f"{path} is missing; run.json lists it as an output")
        if _sha256(path) != digest:
            raise InvalidOutputError(
                f"{path} differs from the file this run wrote (sha256 {digest[:16]}... in "
                f"run.json); expected one consistent set: files of different runs are mixed "
                f"in {outdir}, rerun `coffea-ad run`"
            )
    data = json.loads((outdir / "histograms.json").read_text(), object_hook=uhi_json.object_hook)
    result: dict[str, Any] = json.loads((outdir / "cutflow.json").read_text())
    result["hists"] = {name: Hist(from_uhi(h)) for name, h in data.items()}
    if "arrays.npz" in outputs:
        arrays: dict[str, dict[str, np.ndarray]] = {}
        with np.load(outdir / "arrays.npz", allow_pickle=False) as npz:
            for key in npz.files:
                dataset, name = key.split("/", 1)
                arrays.setdefault(dataset, {})[name] = npz[key]
        result["arrays"] = arrays
    return result, info


def check_writable(outdir: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse an existing run directory before any work (see :func:`write_run_dir`)."""
    refuse_existing(outdir, overwrite=overwrite)
