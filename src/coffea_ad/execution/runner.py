"""Running a processor with coffea's ``processor.Runner`` (iterative, futures or Dask
executors) and an account of every entry of every input file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Literal

from coffea import processor
from coffea.nanoevents import PFNanoAODSchema

from coffea_ad.errors import InvalidArgumentError, WrongTypeError
from coffea_ad.execution.checkpoints import checkpointer
from coffea_ad.execution.clients import AnnotatedDaskExecutor, dask_client
from coffea_ad.execution.memory import in_process_run
from coffea_ad.execution.planning import plan
from coffea_ad.execution.provenance import (
    RUN_INFO_KEY,
    IncompleteRunError,
    Provenance,
    reconcile,
    run_record,
    warn_skipped,
)
from coffea_ad.execution.readers import _exception_chain, describe
from coffea_ad.fileset import check_normalisation, load_fileset, runner_metadata

__all__ = ["Executor", "RunOptions", "run_processor"]

Executor = Literal["iterative", "futures", "dask", "dask-awkward"]
EXECUTORS = ("iterative", "futures", "dask", "dask-awkward")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run: the keyword arguments of :func:`run_processor` (see there), in one value."""

    executor: Executor = "dask"
    workers: int = 2
    threads: int = 1
    scheduler: str | None = None
    chunksize: int = 100_000
    maxchunks: int | None = None
    skipbadfiles: bool = False
    progress: bool = False
    checkpoint_dir: str | os.PathLike[str] | None = None
    resources: Mapping[str, float] | None = None
    retries: int = 3
    align_clusters: bool = False
    treename: str = "Events"
    schema: Any = PFNanoAODSchema

    def executor_record(self) -> dict[str, Any]:
        """The settings written to ``run_info["executor"]``."""
        return {"name": self.executor, "workers": self.workers, "threads": self.threads,
                "scheduler": self.scheduler if self.executor == "dask" else None,
                "chunksize": self.chunksize, "maxchunks": self.maxchunks,
                "align_clusters": self.align_clusters, "skipbadfiles": self.skipbadfiles,
                "retries": self.retries, "resources": dict(self.resources or {})}


@contextlib.contextmanager
def client_for(options: RunOptions, client: Any) -> Iterator[Any]:
    """``client`` when given, else a new one (``options.scheduler`` or a LocalCluster)."""
    if client is not None:
        yield client
        return
    with dask_client(options.scheduler, workers=options.workers,
                     threads=options.threads) as new_client:
        yield new_client


class _IterativeExecutor(processor.IterativeExecutor):
    """coffea's IterativeExecutor whose ``status=False`` really hides the progress bar
    (coffea 2026.9 passes ``disable`` to rich as a task field, which rich ignores)."""

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        if self.status or len(items) == 0:
            return super().__call__(items, function, accumulator)
        return processor.accumulate(map(function, items), accumulator), 0


class _FuturesExecutor(processor.FuturesExecutor):
    """coffea's FuturesExecutor whose ``status=False`` hides the progress bars (coffea
    2026.9 draws its futures watcher's rich bars whatever ``status`` says)."""

    def __call__(self, items: Any, function: Any, accumulator: Any) -> Any:
        if self.status:
            return super().__call__(items, function, accumulator)
        import coffea.processor.executor as coffea_executor
        from rich.progress import Progress

        # the watcher looks rich_bar up in its module at call time: a disabled bar for the
        # length of this call (the Runner calls executors one at a time)
        original = coffea_executor.rich_bar
        coffea_executor.rich_bar = lambda: Progress(disable=True)
        try:
            return super().__call__(items, function, accumulator)
        finally:
            coffea_executor.rich_bar = original


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
            "metadata": {...}}}``) or the path of its JSON (read by
            :func:`~coffea_ad.execution.load_fileset`).
        processor_instance: a coffea ``ProcessorABC`` whose ``process`` returns a dict.
        executor: ``"iterative"`` (this process), ``"futures"`` (a pool of ``workers``
            processes), ``"dask"`` (``client`` if given, else ``scheduler``, else a new
            LocalCluster of ``workers`` x ``threads``), or ``"dask-awkward"``
            (:func:`~coffea_ad.execution.apply_processor`; the processor must accept
            dask-awkward events).
        chunksize: target entries per chunk (coffea evens chunks out within a file).
        maxchunks: at most this many chunks per dataset (quick tests); the run_info then
            says the files were not processed completely, which is not an error.
        skipbadfiles: files that cannot be opened and chunks whose reading fails
            (:func:`~coffea_ad.execution.is_reader_error`) are skipped, reported in
            ``run_info["skipped"]`` and by a :class:`SkippedFilesWarning`; without it they
            fail the run.
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
    options = RunOptions(executor=executor, workers=workers, threads=threads,
                         scheduler=scheduler, chunksize=chunksize, maxchunks=maxchunks,
                         skipbadfiles=skipbadfiles, progress=progress,
                         checkpoint_dir=checkpoint_dir, resources=resources, retries=retries,
                         align_clusters=align_clusters, treename=treename, schema=schema)
    if executor == "dask-awkward":
        from coffea_ad.execution.lazy import apply_processor

        return apply_processor(fileset, processor_instance, client=client, scheduler=scheduler,
                               workers=workers, threads=threads, chunksize=chunksize,
                               skipbadfiles=skipbadfiles, treename=treename, schema=schema)
    if executor not in EXECUTORS:
        raise InvalidArgumentError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, "
                         f"got {executor!r}")
    if executor == "dask":
        with client_for(options, client) as dask_client_:
            return run_with_runner(fileset, processor_instance, options, client=dask_client_)
    return run_with_runner(fileset, processor_instance, options)


def run_with_runner(fileset: Mapping[str, Any] | str | Path,
                    processor_instance: processor.ProcessorABC, options: RunOptions, *,
                    client: Any = None) -> dict[str, Any]:
    """:func:`run_processor` for the Runner executors, given its options (``client``: the Dask
    client of the ``"dask"`` executor)."""
    started = time.perf_counter()
    fs = runner_metadata(load_fileset(fileset, treename=options.treename))
    check_normalisation(fs, lumi_fb=getattr(processor_instance, "lumi_fb", None))
    the_plan = plan(fs, chunksize=options.chunksize, maxchunks=options.maxchunks,
                    align_clusters=options.align_clusters, executor=options.executor,
                    client=client, workers=options.workers)
    unreadable = [f"{r['file']}: {r['error']}" for r in the_plan.files if r["error"] is not None]
    if unreadable and not options.skipbadfiles:
        raise IncompleteRunError(
            f"{len(unreadable)} of {len(the_plan.files)} input files could not be opened "
            "(pass skipbadfiles=True / --skip-bad-files to skip them):\n  "
            + "\n  ".join(unreadable), run_info={"files": the_plan.files})
    if not the_plan.chunks:
        raise InvalidArgumentError(f"no file of the fileset could be opened: {unreadable}")

    ex: processor.ExecutorBase
    if options.executor == "iterative":
        ex = _IterativeExecutor(status=options.progress, retries=options.retries)
    elif options.executor == "futures":
        ex = _FuturesExecutor(workers=options.workers, status=options.progress,
                              retries=options.retries)
    else:
        ex = AnnotatedDaskExecutor(client=client, status=options.progress,
                                   retries=options.retries,
                                   annotations={"resources": dict(options.resources)}
                                   if options.resources else None)
    ckpt, ckpt_info = checkpointer(options.checkpoint_dir, processor_instance)
    runner = processor.Runner(executor=ex, schema=options.schema, chunksize=options.chunksize,
                              skipbadfiles=(OSError,) if options.skipbadfiles else False,
                              checkpointer=ckpt, align_clusters=options.align_clusters)
    # reader errors are retried inside the wrapper when skipping is allowed (a transient
    # xrootd failure should not drop a chunk); other errors by the executor (coffea / Dask)
    wrapper = Provenance(processor_instance, skip_reader_errors=options.skipbadfiles,
                         retries=options.retries)
    # in_process_run: chunks that ran in this process (iterative executor) froze the
    # caller's objects for the garbage collector; they are given back when the run ends
    with warnings.catch_warnings(), in_process_run():
        # coffea warns per retry/skip in this process; our report below replaces it
        warnings.filterwarnings("ignore", message="(Performed attempt|Skipping bad file)")
        try:
            wrapped = runner.run(the_plan.chunks, wrapper)
        except Exception as err:
            if not any(_is_dead_worker(e) for e in _exception_chain(err)):
                raise
            raise IncompleteRunError(
                f"a worker process of the {options.executor} executor died mid-run (killed, "
                f"or out of memory: {describe(err)}); the outputs of the chunks it had "
                "finished are lost" + (", those saved in the checkpoint are reused by a rerun"
                                       if ckpt_info else "; rerun, with --checkpoint to keep "
                                       "the chunks that finish"),
                run_info={"files": the_plan.files, "chunks": len(the_plan.chunks),
                          "checkpoint": ckpt_info, "error": describe(err)},
            ) from err
    acc = wrapped.get("out") or {}
    output = acc.get("out")
    files, skipped, problems = reconcile(the_plan, acc.get("chunks", {}), acc.get("errors", {}),
                                         skipbadfiles=options.skipbadfiles)
    info = run_record(
        files, skipped, proc=processor_instance, fileset=fs,
        executor=options.executor_record(), started=started,
        chunks=len(the_plan.chunks),
        chunks_from_checkpoint=sum(f["chunks_from_checkpoint"] for f in files),
        onnx_providers=dict(acc.get("providers", {})), checkpoint=ckpt_info)
    if problems:
        raise IncompleteRunError(
            f"entries processed differ from entries held in {len(problems)} place(s):\n  "
            + "\n  ".join(problems), run_info=info, output=output)
    if output is None:
        raise IncompleteRunError("no chunk produced output; every chunk was skipped:\n  "
                                 + "\n  ".join(skipped), run_info=info)
    if not isinstance(output, MutableMapping):
        raise WrongTypeError("run_processor needs a processor whose output is a dict (to add "
                        f"'{RUN_INFO_KEY}'), found {type(output).__name__}")
    warn_skipped(skipped, stacklevel=3)  # points at the caller of run_processor
    output[RUN_INFO_KEY] = info
    return dict(output) if not isinstance(output, dict) else output


def _is_dead_worker(err: BaseException) -> bool:
    """A process pool lost a worker (``BrokenProcessPool``, loky's ``TerminatedWorkerError``)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(err, BrokenProcessPool) or type(err).__name__ == "TerminatedWorkerError"
