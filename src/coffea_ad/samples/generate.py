"""Driver: generate datasets as PFNano-format files, in parallel, resumably, with a fileset JSON.

Layout of ``out``::

    out/fileset.json                     coffea dataset format, merged across calls
    out/<dataset>/<dataset>_0000.root    Events + Runs trees
    out/<dataset>/<dataset>_0000.json    provenance of that file (seed, settings, sha256, xsec)

Reproducibility: file ``i`` of dataset ``d`` is generated with the Pythia seed derived from
``numpy.random.SeedSequence([seed, crc32(d), i])`` (and the detector smearing from the same
seed), so the same ``seed`` gives the same content whatever ``jobs`` is, and two datasets in
one call never share random numbers.

Resuming: a file is skipped only if its provenance JSON matches the request (process, resolved
settings, seed, number of events), the file's sha256 matches the one recorded when it was
completed, and the ``Events`` tree opens with the recorded number of entries. Files are written
under a temporary name and renamed when complete, so an interrupted run never leaves a file that
looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.atomic import atomic_write_text
from coffea_ad.errors import FilesetError, FolderBusyError, InvalidArgumentError, UnknownNameError
from coffea_ad.fileset import read_fileset as _read_fileset
from coffea_ad.samples.processes import get_process, resolve_settings

__all__ = [
    "DEFAULT_EVENTS_PER_FILE",
    "RECIPES",
    "folder_lock",
    "generate",
    "generate_fileset",
    "read_fileset",
    "recipe_requests",
    "verify_file",
]

DEFAULT_EVENTS_PER_FILE = 5000
_CHUNK = 500  # events per Pythia batch / basket: bounds memory, amortises awkward overhead
_REQUEST_KEYS = ("process", "events", "settings", "events_per_file")


@dataclass(frozen=True)
class _FileTask:
    dataset: str
    process: str
    settings: dict[str, Any]
    seed: int
    index: int
    events: int
    first_event: int
    pythia_seed: int
    path: str


def _lhco_requests(events: int, events_per_file: int | None) -> dict[str, dict[str, Any]]:
    per_file = int(events_per_file or 2000)
    n2 = max(events // 20, 1)
    n3 = max(events // 40, 1)
    # signal first: it is small and every study needs it; the background files then complete
    # one by one, so an interrupted run already leaves usable (verified) files behind
    return {
        "lhco_xy2": {"process": "zprime_xy", "events": n2, "events_per_file": min(per_file, 1000)},
        "lhco_qcd": {"process": "dijet", "events": int(events), "events_per_file": per_file},
        "lhco_xy3": {"process": "zprime_xy_3prong", "events": n3,
                     "events_per_file": min(per_file, 1000)},
    }


RECIPES: dict[str, tuple[str, Callable[[int, int | None], dict[str, dict[str, Any]]]]] = {
    "lhco": (
        ("LHC Olympics R&D-like: EVENTS QCD dijets (process 'dijet', m̂ 2.8-4.5 TeV, p̂T > 1.1 TeV) "
        "as lhco_qcd, W' (3.5 TeV) -> X (500) Y (100) 2-prong (EVENTS/20, lhco_xy2) and "
        "3-prong (EVENTS/40, lhco_xy3)"),
        _lhco_requests,
    ),
}
"""Recipe name -> (description, (events, events_per_file) -> requests for generate_fileset)."""


def recipe_requests(name: str, events: int, events_per_file: int | None = None) -> dict[str, dict[str, Any]]:
    """The :func:`generate_fileset` requests of the recipe ``name`` for ``events`` background events."""
    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES)
    return RECIPES[name][1](int(events), events_per_file)


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("coffea-ad", "pythia8mc", "fastjet", "uproot", "awkward", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _file_seed(seed: int, dataset: str, index: int) -> int:
    state = np.random.SeedSequence([int(seed), zlib.crc32(dataset.encode()), int(index)])
    return int(state.generate_state(1, dtype=np.uint32)[0] % 900_000_000) + 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _provenance_path(path: Path) -> Path:
    return path.with_suffix(".json")


def verify_file(path: str | Path, expected: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Provenance of a completed file, or None if the file is missing, altered or incomplete.

    Args:
        path: a generated ROOT file.
        expected: provenance keys that must match (e.g. ``process``, ``settings``,
            ``pythia_seed``, ``nevents``).

    Returns:
        The provenance dictionary recorded when the file was completed, if everything checks.
    """
    path = Path(path)
    side = _provenance_path(path)
    if not path.is_file() or not side.is_file():
        return None
    try:
        prov = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    for key, value in (expected or {}).items():
        if prov.get(key) != value:
            return None
    if prov.get("sha256") != _sha256(path):
        return None
    import uproot

    try:
        with uproot.open(path) as f:
            if f["Events"].num_entries != prov.get("nevents"):
                return None
    except Exception:  # noqa: BLE001  (whatever makes a file unreadable, it is regenerated)
        return None
    return prov


def _expected(task: _FileTask) -> dict[str, Any]:
    return {
        "process": task.process,
        "settings": task.settings,
        "pythia_seed": task.pythia_seed,
        "nevents": task.events,
        "first_event": task.first_event,
    }


def _drain(ticks: Any, bar: Any) -> None:
    """Move the progress bar by the event counts workers put on ``ticks`` so far."""
    if ticks is None:
        return
    n = 0
    with contextlib.suppress(queue.Empty):
        while True:
            n += ticks.get_nowait()
    if n:
        bar.update(n)


def _run_file(task: _FileTask, progress: Callable[[int], None] | None = None,
              ticks: Any = None) -> dict[str, Any]:
    """Generate one file (or reuse a verified one); returns its provenance.

    ``progress(n)`` (same process) or ``ticks.put(n)`` (a queue shared with the parent) is
    called after every chunk of ``n`` events."""
    if progress is None and ticks is not None:
        progress = ticks.put
    path = Path(task.path)
    prov = verify_file(path, _expected(task))
    if prov is not None:
        if progress:
            progress(task.events)
        return {**prov, "reused": True}

    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.writer import EventsWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    maker = EventMaker(task.process, task.settings, seed=task.pythia_seed)
    with EventsWriter(tmp) as writer:
        done = 0
        while done < task.events:
            n = min(_CHUNK, task.events - done)
            chunk = maker.make(n, first_event=task.first_event + done, run=1, lumi=task.index + 1)
            writer.write(chunk)
            done += n
            if progress:
                progress(n)
    xsec, xsec_err = maker.cross_section_pb()
    prov = {
        **_expected(task),
        "dataset": task.dataset,
        "seed": task.seed,
        "index": task.index,
        "sumw": writer.sumw,
        "sumw2": writer.sumw2,
        "xsec_pb": xsec,
        "xsec_err_pb": xsec_err,
        "versions": _versions(),
    }
    _provenance_path(path).unlink(missing_ok=True)
    os.replace(tmp, path)
    prov["sha256"] = _sha256(path)
    _atomic_write_json(_provenance_path(path), prov)
    return {**prov, "reused": False}


def _atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


#: Lock file of an output folder: one ``generate`` at a time writes into it.
LOCK_NAME = ".coffea-ad-generate.lock"


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the output folder's lock for the whole generation, or refuse at once.

    Two runs into one folder would write the same temporary files and could leave a ROOT file
    without its provenance record while ``fileset.json`` lists it; the second run is refused
    with the holder's pid instead (rerun it afterwards: verified files are reused).
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise FolderBusyError(
                f"another coffea-ad generate (pid {holder}) is writing into {out} (lock "
                f"{path}); expected one run per output folder: wait for it and rerun (files "
                "it completed are reused), or choose another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_fileset(path: Path) -> dict[str, Any]:
    """The fileset already in ``path`` (``{}`` if there is none).

    Raises:
        FilesetError: the file is not JSON, or not ``{dataset: {"files": ...}}``; it is never
            silently replaced (it may list other datasets).
    """
    try:
        return _read_fileset(path, missing_ok=True)
    except FilesetError as err:
        raise FilesetError(f"existing {err}. Fix or move it: it is not overwritten") from None


def _plan(
    requests: Mapping[str, Mapping[str, Any]], *, out: Path, seed: int
) -> tuple[dict[str, tuple[str, dict[str, Any]]], list[_FileTask]]:
    resolved: dict[str, tuple[str, dict[str, Any]]] = {}
    tasks: list[_FileTask] = []
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        # numpy's SeedSequence takes only non-negative integers
        raise InvalidArgumentError(f"seed must be an integer >= 0, found {seed!r}")
    for dataset, req in requests.items():
        for key in req:
            if key not in _REQUEST_KEYS:
                raise UnknownNameError(f"request key of dataset {dataset!r}", key, _REQUEST_KEYS)
        if "process" not in req or "events" not in req:
            raise InvalidArgumentError(
                f"request for dataset {dataset!r} needs 'process' and 'events', got {sorted(req)}"
            )
        process = str(req["process"])
        get_process(process)
        settings = resolve_settings(process, req.get("settings"))
        events = int(req["events"])
        if events <= 0:
            raise InvalidArgumentError(f"dataset {dataset!r}: events must be positive, got {events}")
        per_file = int(req.get("events_per_file") or DEFAULT_EVENTS_PER_FILE)
        if per_file <= 0:
            raise InvalidArgumentError(f"dataset {dataset!r}: events_per_file must be positive, got {per_file}")
        resolved[dataset] = (process, settings)
        n_files = -(-events // per_file)
        for i in range(n_files):
            n = min(per_file, events - i * per_file)
            path = (out / dataset / f"{dataset}_{i:04d}.root").resolve()
            tasks.append(
                _FileTask(dataset, process, settings, int(seed), i, n, i * per_file + 1,
                          _file_seed(seed, dataset, i), str(path))
            )
    return resolved, tasks


def generate_fileset(
    requests: Mapping[str, Mapping[str, Any]],
    *,
    out: str | Path,
    seed: int,
    jobs: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate several datasets (in parallel over files) and write ``out/fileset.json``.

    Args:
        requests: dataset name -> ``{"process": str, "events": int, "settings": {...},
            "events_per_file": int}`` (``settings`` and ``events_per_file`` optional).
        out: output folder.
        seed: master seed; per-file seeds derive from it (see the module docstring).
        jobs: worker processes (1: everything in this process).
        progress: show a tqdm progress bar over events.

    Returns:
        The fileset of the requested datasets in coffea's dataset format:
        ``{dataset: {"files": {abs_path: "Events"}, "metadata": {...}}}``, with metadata
        ``generator`` ("coffea-ad"), ``process``, ``is_signal``, ``settings`` (resolved), ``xsec`` (pb, Pythia's sigmaGen,
        averaged over files weighted by events), ``xsec_err``, ``sumw`` (sum of genWeight),
        ``sumw2``, ``nevents``, ``seed``, ``versions``. ``out/fileset.json`` gets these
        datasets merged into what it already holds.

    Raises:
        UnknownNameError: unknown process, setting or request key.
        FilesetError: ``out/fileset.json`` exists but is malformed (nothing generated).
        FolderBusyError: another generation holds ``out``'s lock.
    """
    out = Path(out)
    resolved, tasks = _plan(requests, out=out, seed=seed)
    read_fileset(out / "fileset.json")  # a malformed one is refused before any event is made
    with folder_lock(out):
        return _generate_locked(resolved, tasks, out=out, seed=seed, jobs=jobs,
                                progress=progress)


def _generate_locked(resolved: dict[str, tuple[str, dict[str, Any]]], tasks: list[_FileTask], *,
                     out: Path, seed: int, jobs: int, progress: bool) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}

    from tqdm.auto import tqdm

    total = sum(t.events for t in tasks)
    if jobs > len(tasks):
        # files are the unit of parallelism (so that content never depends on jobs)
        warnings.warn(
            f"jobs={jobs} but only {len(tasks)} file(s) to generate: at most {len(tasks)} worker(s) "
            "will be busy; lower events_per_file (--events-per-file) to use more",
            stacklevel=2,
        )
    with tqdm(total=total, disable=not progress, unit="ev", desc="generate") as bar:
        if jobs <= 1 or len(tasks) == 1:
            for task in tasks:
                results[task.path] = _run_file(task, bar.update)
        else:
            # spawn: Pythia and FastJet hold C++ state that must not be forked mid-use
            ctx = get_context("spawn")
            with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=int(jobs),
                                                               mp_context=ctx) as pool:
                # workers report every chunk of events through this queue, so the bar moves
                # during a file (a file is thousands of events: ticking per file was too coarse)
                ticks = manager.Queue() if progress else None
                futures = {pool.submit(_run_file, task, None, ticks): task for task in tasks}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(ticks, bar)
                    for fut in done:
                        results[futures[fut].path] = fut.result()
                _drain(ticks, bar)

    fileset: dict[str, Any] = {}
    for dataset, (process, settings) in resolved.items():
        provs = [results[t.path] for t in tasks if t.dataset == dataset]
        nev = np.array([p["nevents"] for p in provs], dtype=float)
        xs = np.array([p["xsec_pb"] for p in provs], dtype=float)
        xe = np.array([p["xsec_err_pb"] for p in provs], dtype=float)
        w = nev / nev.sum()
        fileset[dataset] = {
            "files": {t.path: "Events" for t in tasks if t.dataset == dataset},
            "metadata": {
                # tells plots these are not CMS events (coffea_ad.plotting.labels)
                "generator": "coffea-ad",
                "process": process,
                "is_signal": get_process(process).is_signal,
                "settings": settings,
                "xsec": float((w * xs).sum()),
                "xsec_err": float(np.sqrt(((w * xe) ** 2).sum())),
                "sumw": float(sum(p["sumw"] for p in provs)),
                "sumw2": float(sum(p["sumw2"] for p in provs)),
                "nevents": int(nev.sum()),
                "seed": int(seed),
                "versions": provs[0]["versions"],
            },
        }
    _merge_fileset(out / "fileset.json", fileset)
    return fileset


def _merge_fileset(path: Path, fileset: Mapping[str, Any]) -> None:
    merged = read_fileset(path)
    merged.update(fileset)
    _atomic_write_json(path, merged)


def generate(
    process: str,
    *,
    events: int,
    seed: int,
    out: str | Path,
    settings: Mapping[str, Any] | None = None,
    jobs: int = 1,
    events_per_file: int | None = None,
    progress: bool = False,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Generate one dataset of ``process`` (see :func:`generate_fileset` for the details).

    Args:
        process: a key of :data:`coffea_ad.samples.PROCESSES`.
        events: number of events.
        seed: master seed.
        out: output folder.
        settings: overrides of the process settings.
        jobs: worker processes (files are the unit of parallelism).
        events_per_file: events per file (default :data:`DEFAULT_EVENTS_PER_FILE`).
        progress: show a progress bar.
        dataset: dataset name (default: the process name).

    Returns:
        ``{dataset: {"files": {...}, "metadata": {...}}}``; also merged into ``out/fileset.json``.
    """
    request: dict[str, Any] = {"process": process, "events": events, "settings": dict(settings or {})}
    if events_per_file is not None:
        request["events_per_file"] = events_per_file
    return generate_fileset({dataset or process: request}, out=out, seed=seed, jobs=jobs, progress=progress)
