"""Padded, p_T-ordered particle lists of jet constituents, with a mask, for constituent models.

Each jet becomes a fixed ``[n, F]`` block: its valid constituents (see
:func:`~coffea_ad.features.substructure.valid_constituents`) sorted by decreasing p_T,
truncated to ``n`` and padded with ``pad_value``; ``mask`` is True on real constituents. This
is the input of the particle-list VAE (Chamfer loss) and the node features of the graph AE.

:func:`particle_list` takes grouped constituent records (any backend, dask-awkward
included); :func:`particle_list_from_events` builds the same blocks, bit for bit, for eager
NanoEvents straight from the jet -> candidate link table, and
:func:`particle_blocks_from_events` prepares them to be written batch by batch
(:class:`ParticleBlocks`: what ``OnnxScorer`` scores from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import awkward as ak
import numba
import numpy as np

from coffea_ad.errors import InvalidArgumentError, MissingBranchError, UnknownNameError
from coffea_ad.features._columnar import delta_phi, dispatch, is_dask
from coffea_ad.features.constituents import (
    CONSTITUENT_FIELDS,
    PUPPI_WEIGHT,
    _event_bounds,
    _link_target,
    jet_constituents,
    link_table,
)
from coffea_ad.features.substructure import _constituent, _valid, valid_constituents

__all__ = ["PARTICLE_FEATURES", "ParticleBlocks", "particle_blocks_from_events", "particle_list",
           "particle_list_from_events", "pdg_class"]

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
    """Per-jet rows over all events: numpy for eager input, dask-awkward for dask input,
    typetracers for typetracers (dask-awkward's column projection inside a partition
    function)."""
    if is_dask(record):
        import dask_awkward as dak

        return tuple(dak.flatten(record[f], axis=1) for f in fields)
    if ak.backend(record) == "typetracer":
        return tuple(ak.flatten(record[f], axis=1) for f in fields)
    return tuple(ak.to_numpy(ak.flatten(record[f], axis=1)) for f in fields)


def _checked(features: Sequence[str], n: int) -> tuple[str, ...]:
    """The feature names as a tuple, after checking them and ``n``."""
    names = tuple(features)
    for name in names:
        if name not in PARTICLE_FEATURES:
            raise UnknownNameError("particle feature", name, PARTICLE_FEATURES)
    if n < 1:
        raise InvalidArgumentError(f"n must be a positive number of particles, got {n}")
    return names


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
    features = _checked(features, n)
    if not is_dask(constituents) and ak.backend(constituents, jets) == "cpu":
        return _particle_arrays(constituents, jets, n=int(n), features=features,
                                pad_value=float(pad_value))
    record = dispatch(_particle_record, constituents, jets, label="particle-list", n=int(n),
                      features=features, pad_value=float(pad_value))
    return _split(record, ("values", "mask"))


def _particle_arrays(constituents: ak.Array, jets: ak.Array, *, n: int,
                     features: tuple[str, ...], pad_value: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`particle_list` of eager arrays, from the flat table of valid constituents.

    The same numbers as the awkward form (:func:`_particle_record`, kept for dask-awkward),
    without its per-feature pad/fill/concatenate passes over jagged arrays
    (:func:`_prepare_blocks`).
    """
    c = ak.flatten(valid_constituents(constituents), axis=1)  # jets * var * record
    counts = ak.to_numpy(ak.num(c, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    fields = set(c.fields)

    def column(field: str, name: str) -> np.ndarray:
        if field not in fields:
            raise MissingBranchError(field, c.fields, where="the constituents",
                                     needed_for=f"the particle feature {name!r}")
        return ak.to_numpy(ak.flatten(c[field], axis=None), allow_missing=False)

    def jet_column(field: str) -> np.ndarray:
        return ak.to_numpy(ak.flatten(jets[field], axis=1), allow_missing=False)

    pt = column("pt", "pt")
    return _prepare_blocks(offsets, pt.astype(np.float64), None, None, column, jet_column, n=n,
                           features=features, pad_value=pad_value,
                           float32_pt=pt.dtype == np.float32).arrays()


def particle_list_from_events(
    events: ak.Array,
    *,
    jets: str = "FatJet",
    puppi: bool = True,
    n: int = 50,
    features: Sequence[str] = DEFAULT_FEATURES,
    pad_value: float = 0.0,
    jet_index: np.ndarray | None = None,
) -> tuple[Any, Any]:
    """``particle_list(jet_constituents(events, jets=jets, puppi=puppi), events[jets], ...)``.

    For eager (or virtual) NanoEvents the blocks are built from the flat link table
    (:func:`particle_blocks_from_events`, then :meth:`ParticleBlocks.arrays`) without grouped
    constituent records; the two give the same bits (tests/test_features_particles.py).
    Typetracers and dask-awkward events take the grouped path.

    Args:
        events: NanoEvents with ``{jets}``, its link table and the candidate table (see
            :func:`~coffea_ad.features.constituents.jet_constituents`).
        jets: jet collection; its ``eta``/``phi`` are the axis of Δη, Δφ, ΔR.
        puppi: scale candidate ``pt`` and ``mass`` by ``puppiWeight`` when the table has it.
        n, features, pad_value: as in :func:`particle_list`.
        jet_index: eager events only: the blocks of just these jets (positions in the
            flattened jet collection, any order, repeats allowed), in this order; the others
            are never read or computed. None: every jet.

    Returns:
        ``(values [n_jets, n, F] float32, mask [n_jets, n] bool)``, as :func:`particle_list`
        (dask-awkward arrays for dask-awkward events); ``n_jets = len(jet_index)`` when
        given.

    Raises:
        UnknownNameError, InvalidArgumentError, MissingBranchError: as :func:`particle_list`
            and :func:`~coffea_ad.features.constituents.jet_constituents`.
    """
    features = _checked(features, n)
    if is_dask(events) or ak.backend(events) != "cpu":
        if jet_index is not None:
            raise InvalidArgumentError("particle_list_from_events: jet_index is for eager "
                                       "events; select the jets before a dask-awkward call")
        return particle_list(jet_constituents(events, jets=jets, puppi=puppi), events[jets],
                             n=n, features=features, pad_value=pad_value)
    return particle_blocks_from_events(events, jets=jets, puppi=puppi, n=n, features=features,
                                       pad_value=pad_value, jet_index=jet_index).arrays()


def particle_blocks_from_events(
    events: ak.Array,
    *,
    jets: str = "FatJet",
    puppi: bool = True,
    n: int = 50,
    features: Sequence[str] = DEFAULT_FEATURES,
    pad_value: float = 0.0,
    jet_index: np.ndarray | None = None,
) -> ParticleBlocks:
    """The particle lists of :func:`particle_list_from_events`, prepared but not yet written:
    :meth:`ParticleBlocks.fill` writes the blocks of any range of jets, bit for bit those
    of :func:`particle_list_from_events`.

    A consumer that works in batches (``OnnxScorer`` runs a graph AE 32 jets per call)
    writes each batch into the same small buffer, which stays in the CPU cache, instead of
    one ``[n_jets, n, F]`` array per chunk (55 MB for 40k jets at n = 50, F = 7) that is
    written once and read once from main memory.

    What is done here, once per chunk: a numba pass over the link table keeps each jet's
    valid constituents (p_T times ``puppiWeight`` in the branch precision, as
    :func:`~coffea_ad.features.constituents.jet_constituents` weights it, links out of range
    left out), and the features that need the whole jet (p_T fractions) or numpy's
    logarithm are computed over the flat table.

    Args:
        events: eager or virtual NanoEvents (dask-awkward events: use
            :func:`particle_list_from_events`, which maps the grouped path over partitions).
        jets, puppi, n, features, pad_value, jet_index: as in
            :func:`particle_list_from_events`.

    Raises:
        InvalidArgumentError: dask-awkward or typetracer events; a bad ``jet_index``.
        UnknownNameError, MissingBranchError: as :func:`particle_list_from_events`.
    """
    features = _checked(features, n)
    if is_dask(events) or ak.backend(events) != "cpu":
        raise InvalidArgumentError("particle_blocks_from_events takes eager events; for "
                                   "dask-awkward events use particle_list_from_events")
    links = link_table(events, jets=jets)
    assert links.cands is not None
    # the grouped records carry CONSTITUENT_FIELDS only: the same features are available
    fields = [f for f in CONSTITUENT_FIELDS if f in links.cands.fields]
    weight = (links.column(PUPPI_WEIGHT) if puppi and PUPPI_WEIGHT in links.cands.fields
              else None)
    if jet_index is not None:
        jet_index = _checked_index(jet_index, int(links.jet_offsets[-1]))
    columns = (links.column("pt"), weight, links.column("eta"), links.column("phi"))
    # one pass over the link rows as the file has them finds each jet's rows, a second walks
    # only the wanted jets' rows; rows out of jet order are grouped first (jet_links)
    table = (links.jet_offsets, links.cand_offsets, links.link_offsets, links.jet_index,
             links.cand_index)
    first, end, event_of, ordered = _jet_rows(*table)
    if ordered:
        wanted = (np.arange(len(first), dtype=np.int64) if jet_index is None else jet_index)
        offsets, index, pt = _walk_rows(first, end, event_of, *table, wanted, *columns)
    else:
        grouped = links.links()
        link_offsets, cand_index = grouped.offsets, grouped.cand_index
        if jet_index is not None:
            link_offsets, rows = _take_ranges(link_offsets, jet_index)
            cand_index = cand_index[rows]
        offsets, index, pt = _valid_links(link_offsets, cand_index, *columns)

    def column(field: str, name: str) -> np.ndarray:
        if field not in fields:
            raise MissingBranchError(field, fields, where="the constituents",
                                     needed_for=f"the particle feature {name!r}")
        return links.column(field)

    collection = events[jets]

    def jet_column(field: str) -> np.ndarray:
        values = ak.to_numpy(ak.flatten(collection[field], axis=1), allow_missing=False)
        return values if jet_index is None else values[jet_index]

    # _valid_links multiplies in the branch precision: float32 branches give float32 values
    float32_pt = links.column("pt").dtype == np.float32 and (weight is None
                                                             or weight.dtype == np.float32)
    return _prepare_blocks(offsets, pt, index, weight, column, jet_column, n=int(n),
                           features=features, pad_value=float(pad_value),
                           float32_pt=float32_pt)


def _checked_index(jet_index: Any, n_jets: int) -> np.ndarray:
    index = np.asarray(jet_index)
    if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
        raise InvalidArgumentError(f"jet_index must be a 1-d integer array, found dtype "
                                   f"{index.dtype} and shape {index.shape}")
    index = index.astype(np.int64, copy=False)
    if index.size and (index.min() < 0 or index.max() >= n_jets):
        raise InvalidArgumentError(f"jet_index must lie in [0, {n_jets}) (the flattened jets "
                                   f"of these events), found {index.min()}..{index.max()}")
    return index


def _take_ranges(offsets: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``offsets[i]:offsets[i + 1]`` of ``items``, concatenated: their offsets and
    the source rows."""
    starts = offsets[items]
    lengths = offsets[items + 1] - starts
    new_offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    rows = np.arange(new_offsets[-1], dtype=np.int64) + np.repeat(starts - new_offsets[:-1],
                                                                  lengths)
    return new_offsets, rows


#: features that jet_constituents' PUPPI weighting scales (the four-momentum times w)
_WEIGHTED = ("pt", "mass")
#: feature kinds of :func:`_fill_blocks`
_DETA, _DPHI, _DELTA_R, _CLASS, _TABLE, _RAW = range(6)


def _prepare_blocks(offsets: np.ndarray, pt: np.ndarray, index: np.ndarray | None,
                    weight: np.ndarray | None, column: Callable[[str, str], np.ndarray],
                    jet_column: Callable[[str], np.ndarray], *, n: int,
                    features: tuple[str, ...], pad_value: float,
                    float32_pt: bool = False) -> ParticleBlocks:
    """The padded blocks from a flat table of valid constituents (both eager paths), ready
    to be written.

    Args:
        offsets: ``[n_jets + 1]``: the valid constituents of jet j are ``offsets[j]`` to
            ``offsets[j + 1]`` of the flat table, in the grouped records' order.
        pt: float64 p_T of the flat table (PUPPI-weighted where the records are).
        index: row of ``column()`` arrays of each flat-table entry; None: the same position.
        weight: per row of ``column()``, the factor of ``pt`` and ``mass`` (None: none).
        column: ``column(field, feature)``: a constituent field over the rows
            (:class:`MissingBranchError` naming ``feature`` if absent).
        jet_column: ``jet_column(field)``: the jets' ``field``, flattened over events.
        float32_pt: every ``pt`` is a float32 value (held in float64): each jet is then
            ordered by one integer key per constituent (:func:`_packed_order`).

    Each feature is defined once, here: the logarithms and p_T fractions with numpy over the
    flat table rows of each fill (:meth:`ParticleBlocks._table`; numba's log differs from
    numpy's SIMD log in the last bit of some float64), the rest in :func:`_fill_blocks`, which orders each jet and writes its block in one pass
    (Δφ by :func:`delta_phi` itself, compiled; the PF class from the table of
    :func:`pdg_class`). Everything is float64 until the float32 store.
    """
    kinds = np.empty(len(features), dtype=np.int64)
    slots = np.zeros(len(features), dtype=np.int64)
    table: list[str] = []
    raw: list[np.ndarray] = []
    eta = phi = jet_eta = jet_phi = np.empty(0, dtype=np.float64)
    pdg_id: np.ndarray = np.empty(0, dtype=np.int64)
    for j, name in enumerate(features):
        if name in _AXIS_FEATURES:
            kinds[j] = _AXIS_FEATURES.index(name)
            eta, phi = column("eta", name), column("phi", name)
            jet_eta, jet_phi = (np.ascontiguousarray(jet_column(f), dtype=np.float64)
                                for f in ("eta", "phi"))
        elif name in _TABLE_FEATURES:
            # computed per fill() for the rows it writes (see ParticleBlocks._table)
            kinds[j], slots[j] = _TABLE, len(table)
            table.append(name)
        elif name == "pdg_class":
            kinds[j] = _CLASS
            pdg_id = column("pdgId", name)
        else:
            kinds[j], slots[j] = _RAW, len(raw)
            col = column(name, name)
            if weight is not None and name in _WEIGHTED:
                # the grouped path's product, in the branch precision (inf * 0 -> NaN: pad)
                with np.errstate(invalid="ignore", over="ignore"):
                    col = col * weight
            raw.append(col)
    return ParticleBlocks(
        (offsets, pt, index, kinds, slots, eta, phi, jet_eta, jet_phi, pdg_id, _PDG_CODES,
         _PDG_VALUES, _columns([]), _columns(raw),
         float(pad_value), bool(float32_pt)), n=n, n_features=len(features),
        table=tuple(table))


class ParticleBlocks:
    """The padded particle lists of a chunk's jets, prepared once and written on demand.

    Made by :func:`particle_blocks_from_events`. :meth:`fill` writes the ``[n, F]`` blocks
    of jets ``start:stop`` (each jet ordered and written by one compiled pass), so the
    blocks can go to their consumer a batch at a time through one reused buffer;
    :meth:`arrays` writes all of them (:func:`particle_list_from_events`).

    Attributes:
        n_jets: jets (rows of :meth:`arrays`).
        n: padded length.
        n_features: F.
    """

    def __init__(self, kernel_args: tuple[Any, ...], *, n: int, n_features: int,
                 table: tuple[str, ...] = ()) -> None:
        # everything _fill_blocks takes after (values, mask), offsets and the jet axis first
        self._args = kernel_args
        self.n_jets = len(kernel_args[0]) - 1
        self.n = int(n)
        self.n_features = int(n_features)
        self._table_names = table
        self._table_buffers: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (f"ParticleBlocks(n_jets={self.n_jets}, n={self.n}, "
                f"n_features={self.n_features})")

    def fill(self, start: int, stop: int, values: np.ndarray, mask: np.ndarray) -> None:
        """Write the blocks of jets ``start:stop`` into ``values [stop - start, n, F]``
        (float32, C-contiguous) and ``mask [stop - start, n]`` (C-contiguous, bool or a
        numeric type: 1 on real constituents, 0 on padding)."""
        k = stop - start
        if not 0 <= start <= stop <= self.n_jets:
            raise InvalidArgumentError(f"jets {start}:{stop} are not a range of the "
                                       f"{self.n_jets} jets")
        if (values.shape != (k, self.n, self.n_features) or values.dtype != np.float32
                or not values.flags.c_contiguous or mask.shape != (k, self.n)
                or not mask.flags.c_contiguous):
            raise InvalidArgumentError(
                f"fill({start}, {stop}) writes float32 values {[k, self.n, self.n_features]} "
                f"and a mask {[k, self.n]}, both C-contiguous; found {values.dtype} "
                f"{list(values.shape)} and {mask.dtype} {list(mask.shape)}")
        (offsets, pt, index, kinds, slots, eta, phi, jet_eta, jet_phi, pdg_id, codes, classes,
         table, raw, pad, packed) = self._args
        if self._table_names:
            table = self._table(start, stop)
        _fill_blocks(values, mask, offsets[start:stop + 1], pt, index, kinds, slots, eta, phi,
                     jet_eta[start:stop], jet_phi[start:stop], pdg_id, codes, classes, table,
                     raw, pad, packed, offsets[start])

    def _table(self, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """The numpy-defined features (:data:`_TABLE_FEATURES`) of the flat-table rows of
        jets ``start:stop``, in buffers reused from fill to fill: a whole-chunk column would
        be tens of MB of fresh pages per chunk, each first write a page fault (the
        logarithm of a 20k-event chunk's p_T took 45 ms that way, 2 ms in a reused array).
        Per jet the same operations in the same order as over the whole table: the same
        bits."""
        offsets, pt = self._args[0], self._args[1]
        a, b = int(offsets[start]), int(offsets[stop])
        rows = pt[a:b]
        if not self._table_buffers or self._table_buffers[0].shape[0] < b - a:
            size = max(b - a, 2 * (self._table_buffers[0].shape[0] if self._table_buffers
                                   else 0))
            self._table_buffers = [np.empty(size) for _ in self._table_names]
        out = tuple(buf[:b - a] for buf in self._table_buffers)
        frac = None
        for name, col in zip(self._table_names, out, strict=True):
            if name == "log_pt":
                np.log(rows, out=col)
                continue
            if frac is None:
                counts = np.diff(offsets[start:stop + 1])
                total = np.bincount(np.repeat(np.arange(stop - start), counts), weights=rows,
                                    minlength=stop - start)
                frac = rows / np.repeat(total, counts)  # valid constituents: sum > 0
            if name == "pt_frac":
                col[:] = frac
            else:
                np.log(frac, out=col)
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values [n_jets, n, F] float32, mask [n_jets, n] bool)`` of every jet."""
        values = np.empty((self.n_jets, self.n, self.n_features), dtype=np.float32)
        mask = np.empty((self.n_jets, self.n), dtype=np.bool_)
        self.fill(0, self.n_jets, values, mask)
        return values, mask


def _columns(columns: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The columns as one tuple of contiguous 1-d arrays of one dtype (numba indexes a
    homogeneous tuple by a runtime position): as they are when every column is float32
    (NanoAOD's candidate branches; stacking them into one [columns, rows] array wrote tens of
    MB per chunk, whose first writes cost more than the blocks), else float64 (exact for
    the branches' int and float types). No columns: one empty placeholder."""
    if not columns:
        return (np.empty(0, dtype=np.float64),)
    dtype = np.float32 if all(c.dtype == np.float32 for c in columns) else np.float64
    return tuple(np.ascontiguousarray(c, dtype=dtype) for c in columns)


_AXIS_FEATURES = ("deta", "dphi", "delta_r")  # kinds _DETA, _DPHI, _DELTA_R
_TABLE_FEATURES = ("log_pt", "pt_frac", "log_pt_frac")  # kind _TABLE
_PDG_CODES = np.array(list(_PDG_CLASSES), dtype=np.int64)
_PDG_VALUES = np.array(list(_PDG_CLASSES.values()), dtype=np.int64)
_delta_phi = numba.njit(cache=True, inline="always")(delta_phi)


@numba.njit(cache=True)
def _fill_blocks(values, mask, offsets, pt, index, kinds, slots, eta, phi, jet_eta, jet_phi,
                 pdg_id, codes, classes, table, raw, pad, packed,
                 table_start):  # pragma: no cover - numba
    """Each jet's block: its valid constituents (``offsets`` into the flat table) ordered by
    decreasing ``pt`` with ties in table order (the awkward form's stable argsort), the first
    ``n`` written row by row (feature ``j`` of kind ``kinds[j]``: Δη, Δφ, ΔR to the jet
    axis, PF class, ``table[slots[j]]`` at the table position less ``table_start``,
    ``raw[slots[j]]`` at the row ``index`` gives), non-finite values and the rows past the last constituent ``pad``.
    ``packed``: every ``pt`` is a float32 value, ordered by :func:`_packed_order`."""
    n_jets, n, n_features = values.shape
    longest = 0
    for jet in range(n_jets):
        longest = max(longest, offsets[jet + 1] - offsets[jet])
    keys = np.empty(longest, dtype=np.float64)
    order = np.empty(longest, dtype=np.int64)
    tmp_keys = np.empty(longest, dtype=np.float64)
    tmp_order = np.empty(longest, dtype=np.int64)
    packed_keys = np.empty(longest if packed else 0, dtype=np.uint64)
    axis = False
    for j in range(n_features):
        axis = axis or kinds[j] <= _DELTA_R
    for jet in range(n_jets):
        start = offsets[jet]
        m = offsets[jet + 1] - start
        if packed:
            ranked = _packed_order(pt, start, m, packed_keys, order)
        else:
            for a in range(m):
                keys[a] = pt[start + a]
                order[a] = start + a
            ranked = _stable_descending(keys, order, tmp_keys, tmp_order, m)
        top = min(m, n)
        for r in range(top):
            v = ranked[r]
            i = v if index is None else index[v]
            mask[jet, r] = True
            deta = 0.0
            dphi = 0.0
            if axis:
                deta = np.float64(eta[i]) - jet_eta[jet]
                dphi = _delta_phi(np.float64(phi[i]), jet_phi[jet])
            for j in range(n_features):
                kind = kinds[j]
                if kind == _DETA:
                    x = deta
                elif kind == _DPHI:
                    x = dphi
                elif kind == _DELTA_R:
                    x = np.sqrt(deta * deta + dphi * dphi)
                elif kind == _CLASS:
                    absid = abs(pdg_id[i])
                    cls = 0
                    for q in range(codes.shape[0]):
                        if absid == codes[q]:
                            cls = classes[q]
                    x = np.float64(cls)
                elif kind == _TABLE:
                    x = np.float64(table[slots[j]][v - table_start])
                else:
                    x = np.float64(raw[slots[j]][i])
                # float64 -> float32 on store, as numpy's assignment; non-finite (a NaN/inf
                # branch or jet axis): the pad value
                values[jet, r, j] = x if np.isfinite(x) else pad
        for r in range(top, n):
            mask[jet, r] = False
            for j in range(n_features):
                values[jet, r, j] = pad


@numba.njit(cache=True)
def _packed_order(pt, start, m, keys, order):  # pragma: no cover - numba
    """``start + a`` for ``a < m`` ordered as :func:`_stable_descending` orders
    ``pt[start:start + m]``, for float32 values: the key ``(~bits(p_T) << 32) | a`` sorts
    ascending exactly as p_T descending with ties in input order (positive float32 bits order
    as the values), so one integer per constituent is compared and moved. Insertion sort:
    jets hold tens of constituents, where it beat the run-and-merge sort 1.7x."""
    for a in range(m):
        bits = np.uint64(np.float32(pt[start + a]).view(np.uint32))
        key = ((np.uint64(0xFFFFFFFF) - bits) << np.uint64(32)) | np.uint64(a)
        b = a
        while b > 0 and keys[b - 1] > key:
            keys[b] = keys[b - 1]
            b -= 1
        keys[b] = key
    for a in range(m):
        order[a] = start + np.int64(keys[a] & np.uint64(0xFFFFFFFF))
    return order


@numba.njit(cache=True)
def _stable_descending(keys, order, tmp_keys, tmp_order, m):  # pragma: no cover - numba
    """Sort ``keys[:m]`` (finite) by decreasing value, equal keys in input order, permuting
    ``order`` alongside; returns the buffer (``order`` or ``tmp_order``) holding the result.
    Insertion-sorted runs of 16, then bottom-up merges."""
    run = 16
    for lo in range(0, m, run):
        hi = min(lo + run, m)
        for a in range(lo + 1, hi):
            key = keys[a]
            item = order[a]
            b = a
            while b > lo and keys[b - 1] < key:  # moves past strictly smaller keys only
                keys[b] = keys[b - 1]
                order[b] = order[b - 1]
                b -= 1
            keys[b] = key
            order[b] = item
    src_keys, src_order, dst_keys, dst_order = keys, order, tmp_keys, tmp_order
    width = run
    while width < m:
        for lo in range(0, m, 2 * width):
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            a, b, out = lo, mid, lo
            while a < mid and b < hi:
                if src_keys[b] > src_keys[a]:  # the right run wins strict ties only: stable
                    dst_keys[out] = src_keys[b]
                    dst_order[out] = src_order[b]
                    b += 1
                else:
                    dst_keys[out] = src_keys[a]
                    dst_order[out] = src_order[a]
                    a += 1
                out += 1
            while a < mid:
                dst_keys[out] = src_keys[a]
                dst_order[out] = src_order[a]
                a += 1
                out += 1
            while b < hi:
                dst_keys[out] = src_keys[b]
                dst_order[out] = src_order[b]
                b += 1
                out += 1
        src_keys, dst_keys = dst_keys, src_keys
        src_order, dst_order = dst_order, src_order
        width *= 2
    return src_order


@numba.njit(cache=True)
def _jet_rows(jet_offsets, cand_offsets, link_offsets, ji, ci):  # pragma: no cover - numba
    """Per flattened jet: the first and one past the last of its link rows in range, and its
    event; False (with partial arrays) at the first row out of jet order."""
    n_jets = jet_offsets[-1]
    first = np.zeros(n_jets, dtype=np.int64)
    end = np.zeros(n_jets, dtype=np.int64)
    event_of = np.empty(n_jets, dtype=np.int64)
    last = -1
    for event in range(link_offsets.shape[0] - 1):
        for g in range(jet_offsets[event], jet_offsets[event + 1]):
            event_of[g] = event
        bounds = _event_bounds(jet_offsets, cand_offsets, event)
        for k in range(link_offsets[event], link_offsets[event + 1]):
            g, _ = _link_target(ji[k], ci[k], bounds)
            if g < 0:
                continue
            if g < last:
                return first, end, event_of, False
            if g != last:
                first[g] = k
            end[g] = k + 1
            last = g
    return first, end, event_of, True


@numba.njit(cache=True)
def _walk_rows(first, end, event_of, jet_offsets, cand_offsets, link_offsets, ji, ci, jets,
               pt, weight, eta, phi):  # pragma: no cover - numba
    """:func:`_valid_links` of ``jets`` (flattened jet indices, any order) straight from
    jet-ordered link rows (:func:`_jet_rows`): between a jet's first and last row in range,
    every row in range is the jet's own."""
    total = 0
    for g in jets:
        total += end[g] - first[g]
    out_offsets = np.zeros(jets.shape[0] + 1, dtype=np.int64)
    out_index = np.empty(total, dtype=np.int64)
    out_pt = np.empty(total, dtype=np.float64)
    m = 0
    for q in range(jets.shape[0]):
        g = jets[q]
        bounds = _event_bounds(jet_offsets, cand_offsets, event_of[g])
        for k in range(first[g], end[g]):
            h, cand = _link_target(ji[k], ci[k], bounds)
            if h < 0:
                continue
            p, e, f = _constituent(cand, pt, weight, eta, phi)
            if _valid(p, e, f):
                out_index[m] = cand
                out_pt[m] = p
                m += 1
        out_offsets[q + 1] = m
    return out_offsets, out_index[:m], out_pt[:m]


@numba.njit(cache=True)
def _valid_links(offsets, index, pt, weight, eta, phi):  # pragma: no cover - numba
    """The links of each jet (``offsets``, candidate ``index``) that
    :func:`~coffea_ad.features.substructure.valid_constituents` keeps of the grouped records
    (p_T > 0, finite p_T, η, φ; p_T times ``weight`` unless None, in the branch precision):
    their offsets, candidate indices and float64 p_T, link order kept."""
    n_jets = offsets.shape[0] - 1
    out_offsets = np.zeros(n_jets + 1, dtype=np.int64)
    out_index = np.empty(index.shape[0], dtype=np.int64)
    out_pt = np.empty(index.shape[0], dtype=np.float64)
    m = 0
    for jet in range(n_jets):
        for k in range(offsets[jet], offsets[jet + 1]):
            p, e, f = _constituent(index[k], pt, weight, eta, phi)
            if _valid(p, e, f):
                out_index[m] = index[k]
                out_pt[m] = p
                m += 1
        out_offsets[jet + 1] = m
    return out_offsets, out_index[:m], out_pt[:m]
