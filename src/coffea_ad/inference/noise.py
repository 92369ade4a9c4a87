"""Random numbers that are a function of the event, not of the chunk or the executor.

A sampled background template (the resonant processor's cVAE/flow decoder fed standard-normal
noise) must not depend on how a file is split into chunks or partitions, or on which executor
runs it. :func:`event_normals` derives every number from ``(seed, run, luminosityBlock, event,
copy, column)`` with the SplitMix64 mixer (Steele, Lea & Flood, OOPSLA 2014): a counter-based
generator, so the same event always gets the same noise, whatever precedes it in its chunk.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["event_normals", "splitmix64"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: ArrayLike) -> NDArray[np.uint64]:
    """The SplitMix64 output function of ``x + golden`` (uint64, wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def event_normals(seed: int, run: ArrayLike, lumi: ArrayLike, event: ArrayLike, width: int,
                  copies: int = 1) -> NDArray[np.float32]:
    """Standard-normal noise ``[n * copies, width]`` for ``n`` events, rows event-major (the
    ``copies`` rows of event 0 first), as :func:`numpy.repeat` orders per-event conditions.

    Args:
        seed: template seed.
        run, lumi, event: the event identifiers (NanoAOD ``run``, ``luminosityBlock``,
            ``event``), ``[n]``.
        width: noise columns per row.
        copies: rows per event.
    """
    run = np.asarray(run).astype(np.uint64)
    lumi = np.asarray(lumi).astype(np.uint64)
    event = np.asarray(event).astype(np.uint64)
    key = splitmix64(np.full(run.shape, seed, dtype=np.int64).astype(np.uint64))
    for part in (run, lumi, event):
        key = splitmix64(key ^ part)
    n_u = copies * width * 2  # Box-Muller: two uniforms per normal
    counter = splitmix64(np.arange(n_u, dtype=np.uint64) + np.uint64(1))
    bits = splitmix64(key[:, None] ^ counter[None, :])
    u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in (0, 1)
    u = u.reshape(len(key), copies, width, 2)
    z = np.sqrt(-2.0 * np.log(u[..., 0])) * np.cos(2.0 * np.pi * u[..., 1])
    return z.reshape(len(key) * copies, width).astype(np.float32)
