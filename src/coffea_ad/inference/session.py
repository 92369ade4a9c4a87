"""One ONNX Runtime session per model file and options per process.

Sessions cannot be pickled and are costly to create (graph optimization, provider setup, on a
GPU the CUDA context), so scorers unpickled for every chunk by coffea's executors find the
session of their worker process here instead of creating one each.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from coffea_ad._optional import require
from coffea_ad.errors import ModelFileError
from coffea_ad.inference.providers import select_providers

__all__ = [
    "GraphOptimization",
    "generation",
    "get_session",
    "release_sessions",
    "session_creations",
]

GraphOptimization = Literal["disable", "basic", "extended", "all"]


# ----------------------------------------------------------------------------- session cache
# One InferenceSession per (model file, options) per process. Sessions are thread-safe for
# run(), so threads of one worker share it too.
_SESSIONS: dict[tuple[Any, ...], Any] = {}


_SESSIONS_LOCK = threading.Lock()


_SESSION_CREATIONS = 0


def session_creations() -> int:
    """Number of ONNX Runtime sessions :class:`OnnxScorer` created in this process so far."""
    return _SESSION_CREATIONS


_GENERATION = 0  # bumped by release_sessions so instances drop the sessions they hold


def generation() -> int:
    """Bumped by :func:`release_sessions`; scorers compare it to drop sessions they hold."""
    return _GENERATION


def release_sessions() -> None:
    """Drop every cached session of this process (they are re-created on next use)."""
    global _GENERATION
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
        _GENERATION += 1


_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _create_session(
    path: Path,
    *,
    model_bytes: bytes | None = None,
    providers: list[str],
    intra_op_threads: int | None,
    graph_optimization: GraphOptimization,
) -> Any:
    ort = require("onnxruntime", purpose="ONNX model scoring")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _OPT_LEVELS[graph_optimization]
    )
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    options.log_severity_level = 3  # errors only: provider-assignment notes flood worker logs
    source: str | bytes = model_bytes if model_bytes is not None else str(path)
    if graph_optimization != "disable" and providers and providers[0] == "CPUExecutionProvider":
        # the same function from kernels the CPU provider runs faster (its Elu is scalar, its
        # row-vector broadcasts loop per row): in memory, the file and its sha256 unchanged
        from coffea_ad.inference.rewrite import rewrite_for_cpu

        raw = model_bytes if model_bytes is not None else _read_model(path)
        try:
            rewritten = rewrite_for_cpu(raw) if raw is not None else None
        except Exception:  # noqa: BLE001 - not a model onnx can parse: ONNX Runtime says why
            rewritten = None
        if rewritten is not None:
            source = rewritten
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail)
        raise ModelFileError(
            f"ONNX Runtime could not load {path} with providers {providers}: "
            f"{type(err).__name__}: {err}"
        ) from err


def _read_model(path: Path) -> bytes | None:
    """The model file's bytes, or None where it cannot be read (ONNX Runtime then loads the
    path itself and reports the problem)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def get_session(
    path: Path,
    *,
    providers: Sequence[str] | None,
    intra_op_threads: int | None,
    graph_optimization: GraphOptimization,
    check: Callable[[Any], None],
    model_bytes: bytes | None = None,
    sha256: str | None = None,
) -> Any:
    """The process's session for ``path`` and these options, created (and checked) once.

    Args:
        path: the ``.onnx`` file (its size and mtime are part of the key, so a file rewritten
            in place gets a fresh session); only a label when ``model_bytes`` is given.
        providers: the user's provider order (``None``: GPU first when available).
        intra_op_threads, graph_optimization: session options (part of the key).
        check: called on a new session before it is cached (raises on a contract mismatch).
        model_bytes: the serialized model: the session is built from these bytes and the
            file is never opened (workers without the submitter's disk).
        sha256: digest of ``model_bytes``, the cache key in place of the file's stat.

    Returns:
        An ``onnxruntime.InferenceSession``.
    """
    global _SESSION_CREATIONS
    options = (None if providers is None else tuple(providers), intra_op_threads,
               graph_optimization)
    if model_bytes is not None:
        key: tuple[Any, ...] = ("sha256", sha256 or hashlib.sha256(model_bytes).hexdigest(),
                                *options)
    else:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, *options)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _create_session(
                path,
                model_bytes=model_bytes,
                providers=select_providers(providers),
                intra_op_threads=intra_op_threads,
                graph_optimization=graph_optimization,
            )
            check(session)
            _SESSIONS[key] = session
            _SESSION_CREATIONS += 1
    return session
