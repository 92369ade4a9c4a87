"""Private helpers shared by the feature modules: dask dispatch, typetracer checks, geometry.

Every public feature function is written once, for eager awkward arrays (coffea NanoEvents in
virtual mode included). A dask-awkward input is handled by running that same eager function on
each partition with :func:`dask_awkward.map_partitions`; dask-awkward first runs it on
typetracers (arrays with a type but no data) to learn which branches it touches, which is what
makes ``dask_awkward.necessary_columns`` read only the branches a feature needs. So every eager
function must also work on typetracers: pure awkward operations do, and numba kernels are
skipped there (:func:`is_typetracer`) after touching the data they would have read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import MissingBranchError

__all__ = [
    "delta_phi",
    "dispatch",
    "first_present",
    "is_dask",
    "is_typetracer",
    "rapidity",
]


def is_dask(*arrays: Any) -> bool:
    """True if any argument is a dask-awkward collection (without importing dask eagerly)."""
    for array in arrays:
        module = type(array).__module__
        if module.startswith("dask_awkward"):
            return True
    return False


def is_typetracer(array: Any) -> bool:
    """True for an awkward array without data (dask-awkward's meta / column-projection pass)."""
    return isinstance(array, ak.Array) and ak.backend(array) == "typetracer"


def dispatch(eager: Callable[..., Any], *arrays: Any, label: str, **options: Any) -> Any:
    """Call ``eager(*arrays, **options)``, or map it over the partitions of dask-awkward inputs."""
    if is_dask(*arrays):
        from coffea_ad._optional import require

        dak = require("dask_awkward", purpose=f"{label} on dask-awkward arrays")
        return dak.map_partitions(eager, *arrays, label=label, **options)
    return eager(*arrays, **options)


def first_present(record: Any, names: tuple[str, ...], *, where: str, needed_for: str) -> str:
    """The first of ``names`` that is a field of ``record``; else :class:`MissingBranchError`."""
    fields = list(record.fields)
    for name in names:
        if name in fields:
            return name
    raise MissingBranchError(
        " or ".join(names), fields, where=where, needed_for=needed_for
    )


def delta_phi(phi1: Any, phi2: Any) -> Any:
    """φ1 − φ2 wrapped into [−π, π) (works on numpy and awkward arrays of any jaggedness)."""
    return (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi


def rapidity(pt: Any, eta: Any, mass: Any) -> Any:
    """Rapidity y = asinh(p_z / m_T), m_T = sqrt(p_T² + m²): exact and stable for m ≪ p_T.

    (sinh y = p_z / m_T follows from E = m_T cosh y, p_z = m_T sinh y.)
    """
    pz = pt * np.sinh(eta)
    mt = np.sqrt(pt * pt + mass * mass)
    return np.arcsinh(pz / mt)


def flatten_jets(constituents: Any, fields: tuple[str, ...]) -> tuple[Any, dict[str, Any], Any]:
    """Flat float64 numpy buffers of ``events * jets * var`` records, for numba kernels.

    Returns:
        ``(offsets, columns, jets_per_event)``: ``offsets [n_jets + 1]`` int64 into the flat
        constituent arrays, ``columns[field]`` float64 ``[n_constituents]`` (zeros for a field
        the records lack), and the ``events`` counts of jets to unflatten per-jet results.
    """
    per_jet = ak.num(constituents, axis=2)
    counts = ak.to_numpy(ak.flatten(per_jet, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    columns = {}
    for field in fields:
        if field in constituents.fields:
            flat = ak.to_numpy(ak.flatten(constituents[field], axis=None))
            columns[field] = np.ascontiguousarray(flat, dtype=np.float64)
        else:
            columns[field] = np.zeros(offsets[-1], dtype=np.float64)
    return offsets, columns, ak.num(per_jet, axis=1)


def touch_and_template(constituents: Any, fields: tuple[str, ...], *extra: Any) -> Any:
    """Typetracer stand-in for a numba kernel: mark ``fields`` (and ``extra`` arrays) as read,
    return an ``events * jets * float32`` typetracer of the kernel's output shape."""
    for field in fields:
        if field in constituents.fields:
            ak.typetracer.touch_data(constituents[field])
    for array in extra:
        ak.typetracer.touch_data(array)
    return ak.values_astype(ak.sum(constituents[fields[0]], axis=-1), np.float32)
