"""Jet → constituent links: events × jets × PF candidates, built from the PFNano link tables.

PFNano writes, per event, a link table ``{jets}PFCands`` (one row per jet–candidate pair, with
``jetIdx`` and ``pFCandsIdx``) next to the candidate table ``PFCands``; NanoAOD v15 spells them
``{jets}PFCand`` (``jetIdx``, ``pfCandIdx``) and ``PFCand``. coffea's ``FatJet.constituents``
needs ``FatJet_nConstituents``, which older PFNano files (the real ``pfnano.root``) lack, so the
grouping is done here from ``jetIdx`` alone: it does not assume the rows are sorted by jet and it
keeps jets without any candidate (zero-length lists).

CMS AK8 jets are PUPPI jets: each candidate enters the jet with its PUPPI weight, so
``FatJet`` p_T and mass (before JEC) are the sums of ``puppiWeight * p4`` of the linked
candidates, not of the raw candidates. When the candidate table carries ``puppiWeight``
(PFNano's ``PFCands_puppiWeight``), :func:`jet_constituents` scales each constituent's ``pt`` and
``mass`` by it by default (``puppi=False`` keeps the raw candidates): on the real
``pfnano.root`` the weighted sums reproduce the raw FatJet p_T and mass to 0.1 %, the unweighted
sums are up to 16 % heavier. NanoAOD v15's ``PFCand`` table has no weight branch (and files
produced with already-weighted candidates carry none either): there, nothing is scaled.
Candidates with weight 0 get ``pt = 0`` and are left out of every substructure sum by
:func:`~coffea_ad.features.substructure.valid_constituents`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numba
import numpy as np

from coffea_ad.errors import MissingBranchError
from coffea_ad.features._columnar import dispatch, first_present, is_typetracer

__all__ = ["CONSTITUENT_FIELDS", "PUPPI_WEIGHT", "JetLinks", "LinkTable", "jet_constituents",
           "jet_links", "link_table"]

#: Candidate fields copied into the constituent records, when the candidate table has them.
CONSTITUENT_FIELDS: tuple[str, ...] = ("pt", "eta", "phi", "mass", "pdgId", "charge", "d0", "dz")
_REQUIRED = ("pt", "eta", "phi")
#: Candidate field holding the PUPPI weight (PFNano ``PFCands_puppiWeight``).
PUPPI_WEIGHT = "puppiWeight"


def jet_constituents(events: ak.Array, *, jets: str = "FatJet", puppi: bool = True,
                     fields: Sequence[str] | None = None) -> ak.Array:
    """Group the PF candidates of each jet: ``events * jets * constituents`` records.

    Args:
        events: NanoEvents (PFNanoAODSchema/NanoAODSchema, eager or virtual, or dask-awkward
            from ``NanoEventsFactory.from_root(..., mode="dask")``) with the collections
            ``{jets}``, ``{jets}PFCands`` (or ``{jets}PFCand``) and ``PFCands`` (or ``PFCand``).
        jets: name of the jet collection (``"FatJet"``, ``"Jet"``, ...).
        puppi: scale ``pt`` and ``mass`` of each constituent by the candidate's
            ``puppiWeight`` when the candidate table has that field (the weight is also kept
            as the field ``puppiWeight``); ``False`` gives the raw candidates. Without the
            field this option changes nothing.

    Returns:
        ``events * jets * var * {pt, eta, phi, mass, pdgId, charge, d0, dz}`` (the fields the
        candidate table has, among those), constituents in link-table order within each jet,
        aligned with ``events[jets]``: a jet without links has an empty list. Link rows whose
        ``jetIdx`` or candidate index is out of range are ignored (they point at objects that
        are not in the file).

    Raises:
        MissingBranchError: the link table, the candidate table or one of ``pt, eta, phi`` of
            the candidates is missing; the message lists what the events have.
    """
    wanted = CONSTITUENT_FIELDS if fields is None else tuple(
        dict.fromkeys((*_REQUIRED, *fields)))
    return dispatch(_jet_constituents, events, label="jet-constituents", jets=jets, puppi=puppi,
                    wanted=wanted)


def _link_names(events: ak.Array, jets: str) -> tuple[str, str, str]:
    """(link table, its candidate-index field, candidate table) of ``jets`` in ``events``;
    :class:`MissingBranchError` naming what exists when one is missing."""
    needed = f"the constituents of {jets}"
    first_present(events, (jets,), where="events", needed_for=needed)
    link_name = first_present(
        events, (f"{jets}PFCands", f"{jets}PFCand"), where="events", needed_for=needed
    )
    # v15 pairs the singular link table with the singular candidate table; accept either
    # spelling of the candidates in case a private production mixes them.
    cand_names = ("PFCands", "PFCand") if link_name.endswith("s") else ("PFCand", "PFCands")
    cand_name = first_present(events, cand_names, where="events", needed_for=needed)
    links = events[link_name]
    idx_name = first_present(
        links, ("pFCandsIdx", "pfCandIdx", "pFCandIdx"), where=link_name, needed_for=needed
    )
    first_present(links, ("jetIdx",), where=link_name, needed_for=needed)
    cands = events[cand_name]
    for field in _REQUIRED:
        if field not in cands.fields:
            raise MissingBranchError(field, cands.fields, where=cand_name, needed_for=needed)
    return link_name, idx_name, cand_name


def _jet_constituents(events: ak.Array, *, jets: str, puppi: bool = True,
                      wanted: tuple[str, ...] = CONSTITUENT_FIELDS) -> ak.Array:
    link_name, idx_name, cand_name = _link_names(events, jets)
    links, cands = events[link_name], events[cand_name]
    jet_idx = links["jetIdx"]
    cand_idx = links[idx_name]
    fields = [f for f in wanted if f in cands.fields]
    if puppi and PUPPI_WEIGHT in cands.fields:
        cands = _puppi_weighted(cands, fields)
        fields.append(PUPPI_WEIGHT)
    if not is_typetracer(jet_idx):
        return _group_eager(events[jets]["pt"], cands, jet_idx, cand_idx, fields)
    jet_local = ak.local_index(events[jets]["pt"], axis=1)
    keep = (
        (jet_idx >= 0)
        & (jet_idx < ak.num(jet_local, axis=1))
        & (cand_idx >= 0)
        & (cand_idx < ak.num(cands[_REQUIRED[0]], axis=1))
    )
    jet_idx, cand_idx = jet_idx[keep], cand_idx[keep]
    # a stable sort keeps the link-table order inside each jet
    order = ak.argsort(jet_idx, axis=1, stable=True)
    jet_idx, cand_idx = jet_idx[order], cand_idx[order]
    # index the zipped record, not each field: a record carry stays lazy per field, so dask
    # column projection (and virtual mode) reads only the candidate branches used downstream
    linked = ak.zip({f: cands[f] for f in fields}, depth_limit=2)[cand_idx]
    # constituents per jet: events * jets * links comparison; small (a few jets per event)
    # and pure awkward, so it also runs on typetracers for dask column projection
    counts = ak.sum(jet_idx[:, np.newaxis, :] == jet_local[:, :, np.newaxis], axis=2)
    # unflatten at axis 0 twice (links -> jets -> events): an axis=1 unflatten cannot tell to
    # which event a zero-count jet at an event boundary belongs
    per_jet = ak.unflatten(ak.flatten(linked, axis=1), ak.flatten(counts, axis=1))
    return ak.unflatten(per_jet, ak.num(jet_local, axis=1))


def _puppi_weighted(cands: ak.Array, fields: list[str]) -> ak.Array:
    """The candidate records with ``pt`` and ``mass`` scaled by the PUPPI weight (the
    four-momentum times w: η and φ unchanged)."""
    weight = cands[PUPPI_WEIGHT]
    out = {f: cands[f] for f in fields}
    out["pt"] = cands["pt"] * weight
    if "mass" in out:
        out["mass"] = cands["mass"] * weight
    out[PUPPI_WEIGHT] = weight
    return ak.zip(out, depth_limit=2)


def _group_eager(jet_pt: ak.Array, cands: ak.Array, jet_idx: ak.Array, cand_idx: ak.Array,
                 fields: list[str]) -> ak.Array:
    """The grouping of :func:`_jet_constituents` on eager (or virtual) arrays from the flat
    link table (:meth:`LinkTable.links`): the same result, ~10x faster than the pure-awkward
    form (kept for typetracers, i.e. dask column projection)."""
    links = _link_table(jet_pt, cands, jet_idx, cand_idx).links()
    # carry the zipped record: each candidate field stays lazy (virtual mode reads only the
    # fields used downstream)
    linked = ak.flatten(ak.zip({f: cands[f] for f in fields}, depth_limit=2), axis=1)
    content = linked[links.cand_index].layout
    inner = ak.contents.ListOffsetArray(ak.index.Index64(links.offsets), content)
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(links.jet_offsets), inner))


def _cand_column(cands: ak.Array | None, field: str) -> np.ndarray:
    assert cands is not None
    return ak.to_numpy(ak.flatten(cands[field], axis=1))


@dataclass(frozen=True)
class JetLinks:
    """The jet -> candidate links of eager events as flat numpy arrays (no grouped records).

    Attributes:
        jet_offsets: ``int64 [n_events + 1]``: the jets of event e are ``jet_offsets[e]`` to
            ``jet_offsets[e + 1]`` in the flattened jet collection.
        offsets: ``int64 [n_jets + 1]``: the constituents of (flattened) jet j are
            ``cand_index[offsets[j]:offsets[j + 1]]``.
        cand_index: ``int64 [n_links]``: index into the flattened candidate table, in
            link-table order within each jet; out-of-range links are left out.
        cands: the candidate table (``events * var`` records, fields still lazy in virtual
            mode); :meth:`column` gives one field flattened.
    """

    jet_offsets: np.ndarray
    offsets: np.ndarray
    cand_index: np.ndarray
    cands: ak.Array | None = None

    def column(self, field: str) -> np.ndarray:
        """``field`` of every candidate (flattened over events; index it with ``cand_index``)."""
        return _cand_column(self.cands, field)

    @property
    def counts(self) -> np.ndarray:
        """Linked candidates per flattened jet."""
        return np.diff(self.offsets)


@dataclass(frozen=True)
class LinkTable:
    """The link table of eager events as the file has it, flattened: one row per jet–candidate
    pair with per-event indices (what :class:`JetLinks` is computed from).

    A kernel that walks these rows directly needs no ``[n_links]`` index array of its own;
    :meth:`links` gives the grouping as :class:`JetLinks`.

    Attributes:
        jet_offsets, cand_offsets, link_offsets: ``int64 [n_events + 1]`` offsets of the jets,
            the candidates and the link rows of each event.
        jet_index, cand_index: per link row, the jet and the candidate index within its
            event (as read: rows out of range are still there).
        cands: the candidate table; :meth:`column` gives one field flattened.
    """

    jet_offsets: np.ndarray
    cand_offsets: np.ndarray
    link_offsets: np.ndarray
    jet_index: np.ndarray
    cand_index: np.ndarray
    cands: ak.Array | None = None

    def column(self, field: str) -> np.ndarray:
        """``field`` of every candidate (flattened over events)."""
        return _cand_column(self.cands, field)

    def links(self) -> JetLinks:
        """The grouping by jet (:func:`jet_links`)."""
        args = (self.jet_offsets, self.cand_offsets, self.link_offsets, self.jet_index,
                self.cand_index)
        global_cand, per_jet, ordered = _link_targets(*args, None)
        # a stable sort by jet keeps the link-table order inside each jet; PFNano writes the
        # links jet by jet, so the sort (and the jet index per link it needs) is usually
        # skipped
        if not ordered:
            global_jet = np.empty(len(global_cand), dtype=np.int64)
            _link_targets(*args, global_jet)
            global_cand = global_cand[np.argsort(global_jet, kind="stable")]
        return JetLinks(self.jet_offsets, _offsets(per_jet), global_cand, self.cands)


def link_table(events: ak.Array, *, jets: str = "FatJet") -> LinkTable:
    """The flattened link table of ``jets`` in eager (or virtual) events.

    Raises:
        MissingBranchError: as :func:`jet_constituents`.
    """
    link_name, idx_name, cand_name = _link_names(events, jets)
    links, cands = events[link_name], events[cand_name]
    return _link_table(events[jets]["pt"], cands, links["jetIdx"], links[idx_name])


def jet_links(events: ak.Array, *, jets: str = "FatJet") -> JetLinks:
    """The same grouping as :func:`jet_constituents` as flat arrays, for eager (or virtual)
    events: what numba kernels over constituents need, without building the grouped
    ``events * jets * constituents`` records (two gathers per field and a copy of every
    carried field). Not for typetracers or dask-awkward: use :func:`jet_constituents` there.

    Raises:
        MissingBranchError: as :func:`jet_constituents`.
    """
    return link_table(events, jets=jets).links()


def _counts(array: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)


def _link_table(jet_pt: ak.Array, cands: ak.Array, jet_idx: ak.Array,
                cand_idx: ak.Array) -> LinkTable:
    return LinkTable(_offsets(_counts(jet_pt)), _offsets(_counts(cands[_REQUIRED[0]])),
                     _offsets(_counts(jet_idx)), ak.to_numpy(ak.flatten(jet_idx, axis=1)),
                     ak.to_numpy(ak.flatten(cand_idx, axis=1)), cands)


@numba.njit(cache=True, inline="always")
def _event_bounds(jet_offsets, cand_offsets, event):  # pragma: no cover - numba
    """(first flattened jet, jets, first flattened candidate, candidates) of ``event``."""
    first_jet = jet_offsets[event]
    first_cand = cand_offsets[event]
    return (first_jet, jet_offsets[event + 1] - first_jet, first_cand,
            cand_offsets[event + 1] - first_cand)


@numba.njit(cache=True, inline="always")
def _link_target(j, c, bounds):  # pragma: no cover - numba
    """A link row (jet j, candidate c of an event with ``bounds`` from :func:`_event_bounds`):
    the flattened jet (-1 for a row that points at an object that is not in the file: such
    rows are ignored everywhere) and the flattened candidate."""
    first_jet, n_jets, first_cand, n_cands = bounds
    if j < 0 or j >= n_jets or c < 0 or c >= n_cands:
        return np.int64(-1), np.int64(-1)
    return np.int64(first_jet + j), np.int64(first_cand + c)


@numba.njit(cache=True)
def _link_targets(jet_offsets, cand_offsets, link_offsets, ji, ci,
                  global_jet):  # pragma: no cover - numba
    """Per valid link: the flattened candidate index (and, when ``global_jet`` is an array,
    the flattened jet index into it); links per jet; whether the links are already
    jet-ordered. One pass (numpy needed a repeat per event array and a mask)."""
    global_cand = np.empty(ji.shape[0], dtype=np.int64)
    per_jet = np.zeros(jet_offsets[-1], dtype=np.int64)
    m = 0
    last = -1
    ordered = True
    for event in range(link_offsets.shape[0] - 1):
        bounds = _event_bounds(jet_offsets, cand_offsets, event)
        for k in range(link_offsets[event], link_offsets[event + 1]):
            g, cand = _link_target(ji[k], ci[k], bounds)
            if g < 0:
                continue
            if g < last:
                ordered = False
            last = g
            if global_jet is not None:
                global_jet[m] = g
            global_cand[m] = cand
            per_jet[g] += 1
            m += 1
    return global_cand[:m], per_jet, ordered


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out
