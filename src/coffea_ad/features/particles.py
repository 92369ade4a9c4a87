"""Padded, p_T-ordered particle lists of jet constituents, with a mask, for constituent models.

Each jet becomes a fixed ``[n, F]`` block: its valid constituents (see
:func:`~coffea_ad.features.substructure.valid_constituents`) sorted by decreasing p_T,
truncated to ``n`` and padded with ``pad_value``; ``mask`` is True on real constituents. This
is the input of the particle-list VAE (Chamfer loss) and the node features of the graph AE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import awkward as ak
import numba
import numpy as np

from coffea_ad.errors import InvalidArgumentError, MissingBranchError, UnknownNameError
from coffea_ad.features._columnar import delta_phi, dispatch, is_dask
from coffea_ad.features.substructure import valid_constituents

__all__ = ["PARTICLE_FEATURES", "particle_list", "pdg_class"]

#: Per-constituent features :func:`particle_list` can write, with their definitions.
PARTICLE_FEATURES: dict[str, str] = {
    "deta": "η − η_jet",
    "dphi": "φ − φ_jet wrapped to [−π, π)",
    "delta_r": "sqrt(Δη² + Δφ²) to the jet axis",
    "log_pt": "ln(p_T / GeV)",
    "pt_frac": "p_T / Σ p_T of the jet's valid constituents",
    "log_pt_frac": "ln(p_T / Σ p_T)",
    "pdg_class": "particle-flow class of |pdgId|: 0 other, 1 charged hadron (211), 2 neutral "
                 "hadron (130), 3 photon (22), 4 electron (11), 5 muon (13), 6 HF hadron (1), "
                 "7 HF EM (2)",
    "pt": "p_T", "eta": "η", "phi": "φ", "mass": "mass", "pdgId": "PDG id (signed)",
    "charge": "electric charge", "d0": "transverse impact parameter (PFNano: −1 for neutrals)",
    "dz": "longitudinal impact parameter (PFNano: −1 for neutrals)",
}

DEFAULT_FEATURES: tuple[str, ...] = ("deta", "dphi", "log_pt", "pt_frac", "pdg_class", "d0",
                                     "dz")
_PDG_CLASSES = {211: 1, 130: 2, 22: 3, 11: 4, 13: 5, 1: 6, 2: 7}


def pdg_class(pdg_id: Any) -> Any:
    """Map PDG ids to the particle-flow classes of :data:`PARTICLE_FEATURES` (``pdg_class``)."""
    absid = np.abs(pdg_id)
    out = ak.zeros_like(absid, dtype=np.int32) if isinstance(absid, ak.Array) else np.zeros_like(
        absid, dtype=np.int32)
    for code, cls in _PDG_CLASSES.items():
        out = ak.where(absid == code, cls, out) if isinstance(out, ak.Array) else np.where(
            absid == code, cls, out)
    return out


def _feature(name: str, c: ak.Array, jets: ak.Array) -> ak.Array:
    def f64(field: str) -> ak.Array:
        if field not in c.fields:
            raise MissingBranchError(field, c.fields, where="the constituents",
                                     needed_for=f"the particle feature {name!r}")
        return ak.values_astype(c[field], np.float64)

    if name in ("deta", "dphi", "delta_r"):
        deta = f64("eta") - ak.values_astype(jets["eta"], np.float64)[..., np.newaxis]
        dphi = delta_phi(f64("phi"), ak.values_astype(jets["phi"], np.float64)[..., np.newaxis])
        return {"deta": deta, "dphi": dphi, "delta_r": np.sqrt(deta * deta + dphi * dphi)}[name]
    if name == "log_pt":
        return np.log(f64("pt"))
    if name in ("pt_frac", "log_pt_frac"):
        pt = f64("pt")
        frac = pt / ak.sum(pt, axis=-1)[..., np.newaxis]  # valid constituents: sum > 0
        return frac if name == "pt_frac" else np.log(frac)
    if name == "pdg_class":
        if "pdgId" not in c.fields:
            f64("pdgId")
        return ak.values_astype(pdg_class(c["pdgId"]), np.float64)
    return f64(name)


def _pad(values: ak.Array, n: int, fill: Any) -> ak.Array:
    return ak.fill_none(ak.pad_none(values, n, axis=-1, clip=True), fill, axis=-1)


def _particle_record(constituents: ak.Array, jets: ak.Array, *, n: int,
                     features: tuple[str, ...], pad_value: float) -> ak.Array:
    c = valid_constituents(constituents)
    c = c[ak.argsort(c["pt"], axis=-1, ascending=False, stable=True)]
    columns = []
    for name in features:
        col = _feature(name, c, jets)
        # jets with NaN/inf axis: defined pad value instead of NaN in Δη/Δφ/ΔR
        col = ak.where(np.isfinite(col), col, pad_value)
        columns.append(_pad(ak.values_astype(col, np.float32), n, np.float32(pad_value))[
            ..., np.newaxis])
    values = ak.concatenate(columns, axis=-1)
    mask = _pad(ak.ones_like(c["pt"], dtype=np.bool_), n, False)
    return ak.zip({"values": values, "mask": mask}, depth_limit=2)


def _split(record: Any, fields: Sequence[str]) -> tuple[Any, ...]:
    """Per-jet rows over all events: numpy for eager input, dask-awkward for dask input."""
    if is_dask(record):
        import dask_awkward as dak

        return tuple(dak.flatten(record[f], axis=1) for f in fields)
    return tuple(ak.to_numpy(ak.flatten(record[f], axis=1)) for f in fields)


def particle_list(
    constituents: ak.Array,
    jets: ak.Array,
    *,
    n: int = 50,
    features: Sequence[str] = DEFAULT_FEATURES,
    pad_value: float = 0.0,
) -> tuple[Any, Any]:
    """Padded p_T-ordered constituent features of every jet.

    Args:
        constituents: ``events * jets * var`` records from
            :func:`~coffea_ad.features.constituents.jet_constituents`.
        jets: ``events * jets * {eta, phi}`` aligned with ``constituents`` (the axis for Δη,
            Δφ, ΔR).
        n: padded length (constituents beyond the ``n`` highest-p_T are dropped).
        features: names from :data:`PARTICLE_FEATURES`, in the column order wanted.
        pad_value: value of padded entries (and of Δη/Δφ/ΔR of a jet whose axis is not
            finite).

    Returns:
        ``(values, mask)``: ``values [n_jets, n, F]`` float32 and ``mask [n_jets, n]`` bool
        (True for real constituents), jets of all events in order; numpy arrays for eager
        input, dask-awkward arrays for dask-awkward input.

    Raises:
        UnknownNameError: a feature name not in :data:`PARTICLE_FEATURES`.
        MissingBranchError: the constituents lack a field the features need (NanoAOD v15
            ``PFCand`` has no ``d0``/``dz``/``charge``).
    """
    features = tuple(features)
    for name in features:
        if name not in PARTICLE_FEATURES:
            raise UnknownNameError("particle feature", name, PARTICLE_FEATURES)
    if n < 1:
        raise InvalidArgumentError(f"n must be a positive number of particles, got {n}")
    if not is_dask(constituents) and ak.backend(constituents, jets) == "cpu":
        return _particle_arrays(constituents, jets, n=int(n), features=features,
                                pad_value=float(pad_value))
    record = dispatch(_particle_record, constituents, jets, label="particle-list", n=int(n),
                      features=features, pad_value=float(pad_value))
    return _split(record, ("values", "mask"))


def _particle_arrays(constituents: ak.Array, jets: ak.Array, *, n: int,
                     features: tuple[str, ...], pad_value: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`particle_list` of eager arrays with numpy on the flat constituent table.

    The same numbers as the awkward form (:func:`_particle_record`, kept for dask-awkward),
    without its per-feature pad/fill/concatenate passes over jagged arrays: one stable sort
    of all constituents by (jet, -p_T), the rank within the jet, one scatter into the padded
    block. The graph AE's chain spends most of its feature time here.
    """
    c = ak.flatten(valid_constituents(constituents), axis=1)  # jets * var * record
    counts = ak.to_numpy(ak.num(c, axis=1)).astype(np.int64)
    n_jets = len(counts)
    offsets = np.zeros(n_jets + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    fields = set(c.fields)

    def flat(field: str, name: str) -> np.ndarray:
        if field not in fields:
            raise MissingBranchError(field, c.fields, where="the constituents",
                                     needed_for=f"the particle feature {name!r}")
        return ak.to_numpy(ak.flatten(c[field], axis=None), allow_missing=False)

    pt = flat("pt", "pt").astype(np.float64)
    # the first n constituents of each jet by decreasing p_T, ties in input order (the
    # awkward form's stable argsort): a sort per jet, not one over all constituents
    src, dest = _top_n_slots(offsets, pt, n)
    rows = dest // n

    def jet_column(field: str) -> np.ndarray:
        values = ak.to_numpy(ak.flatten(jets[field], axis=1), allow_missing=False)
        return values.astype(np.float64)[rows]

    values = np.full((n_jets * n, len(features)), np.float32(pad_value), dtype=np.float32)
    for j, name in enumerate(features):
        if name in ("deta", "dphi", "delta_r"):
            deta = flat("eta", name)[src].astype(np.float64) - jet_column("eta")
            dphi = delta_phi(flat("phi", name)[src].astype(np.float64), jet_column("phi"))
            col = {"deta": deta, "dphi": dphi, "delta_r": np.sqrt(deta * deta + dphi * dphi)}[
                name]
        elif name == "log_pt":
            col = np.log(pt[src])
        elif name in ("pt_frac", "log_pt_frac"):
            total = np.bincount(np.repeat(np.arange(n_jets), counts), weights=pt,
                                minlength=n_jets)
            col = pt[src] / total[rows]
            col = col if name == "pt_frac" else np.log(col)
        elif name == "pdg_class":
            col = pdg_class(flat("pdgId", name)[src]).astype(np.float64)
        else:
            col = flat(name, name)[src].astype(np.float64)
        # jets with NaN/inf axis: defined pad value instead of NaN in Δη/Δφ/ΔR
        values[dest, j] = np.where(np.isfinite(col), col, pad_value)
    mask = np.zeros(n_jets * n, dtype=np.bool_)
    mask[dest] = True
    return values.reshape(n_jets, n, len(features)), mask.reshape(n_jets, n)


@numba.njit(cache=True)
def _top_n_slots(offsets, pt, n):  # pragma: no cover - numba
    """For the constituents of each jet (``offsets``) sorted by decreasing ``pt`` with ties in
    input order, the first ``n``: their flat index (``src``) and their slot in the padded
    ``[n_jets * n]`` block (``dest`` = jet * n + rank)."""
    n_jets = len(offsets) - 1
    total = 0
    for i in range(n_jets):
        total += min(offsets[i + 1] - offsets[i], n)
    src = np.empty(total, dtype=np.int64)
    dest = np.empty(total, dtype=np.int64)
    k = 0
    for i in range(n_jets):
        start, stop = offsets[i], offsets[i + 1]
        order = np.argsort(-pt[start:stop], kind="mergesort")  # mergesort: stable
        for r in range(min(stop - start, n)):
            src[k] = start + order[r]
            dest[k] = i * n + r
            k += 1
    return src, dest
