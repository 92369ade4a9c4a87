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

One module per concept:

- :mod:`coffea_ad.fileset` (shared with training): the one fileset reader (:func:`load_fileset`);
- :mod:`~coffea_ad.execution.readers`: which errors come from reading input (skippable);
- :mod:`~coffea_ad.execution.planning`: the metadata pass and the chunk plan;
- :mod:`~coffea_ad.execution.provenance`: chunk records, their reconciliation with the plan,
  the run record (``run_info``);
- :mod:`~coffea_ad.execution.checkpoints`: per-chunk checkpoints keyed by the processor's
  configuration;
- :mod:`~coffea_ad.execution.clients`: Dask clients and the annotated Dask executor;
- :mod:`~coffea_ad.execution.runner`: :func:`run_processor` on coffea's Runner;
- :mod:`~coffea_ad.execution.lazy`: :func:`apply_processor`, the dask-awkward path.
"""

from coffea_ad.execution.checkpoints import ChunkCheckpointer, processor_fingerprint
from coffea_ad.execution.clients import dask_client
from coffea_ad.execution.lazy import apply_processor
from coffea_ad.execution.provenance import (
    RUN_INFO_KEY,
    IncompleteRunError,
    SkippedFilesWarning,
)
from coffea_ad.execution.readers import is_reader_error
from coffea_ad.execution.runner import Executor, RunOptions, run_processor
from coffea_ad.fileset import load_fileset

__all__ = [
    "RUN_INFO_KEY",
    "ChunkCheckpointer",
    "Executor",
    "IncompleteRunError",
    "RunOptions",
    "SkippedFilesWarning",
    "apply_processor",
    "dask_client",
    "is_reader_error",
    "load_fileset",
    "processor_fingerprint",
    "run_processor",
]
