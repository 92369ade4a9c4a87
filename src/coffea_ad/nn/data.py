"""From a fileset to the training tables, with the feature code the processors use.

A fileset is coffea's dataset format, ``{dataset: {"files": {path: treename}, "metadata":
{...}}}`` (or the path of its JSON). Jet features come from
:func:`coffea_ad.features.jet_features`, the same function the scorer calls at inference, so a
model never sees inputs computed by other code than the one it was trained on. Splits into
train/validation/test are seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import InvalidArgumentError, UnknownNameError
from coffea_ad.fileset import load_fileset
from coffea_ad.inference.contract import file_sha256

__all__ = [
    "LHCO_FEATURES",
    "LHCO_FEATURES_TAU32",
    "JetTable",
    "concat_tables",
    "dataset_files",
    "dijet_rows",
    "dijet_score_rows",
    "event_rows",
    "iter_events",
    "jet_rows",
    "lhco_rows",
    "load_fileset",
    "load_jet_tables",
    "load_rows",
    "particle_rows",
    "signal_datasets",
    "split_indices",
]

Fileset = Mapping[str, Any]


def signal_datasets(fileset: Fileset) -> list[str]:
    """Datasets whose metadata says ``is_signal: True``."""
    return [n for n, e in fileset.items() if bool(e.get("metadata", {}).get("is_signal", False))]


def dataset_files(fileset: Fileset, datasets: Sequence[str] | None = None) -> dict[str, str]:
    """``{path: sha256}`` of every file of ``datasets`` (all if ``None``), for the contract."""
    names = list(fileset) if datasets is None else list(datasets)
    return {path: file_sha256(path) for n in names for path in fileset[n]["files"]}


def iter_events(fileset: Fileset, datasets: Sequence[str] | None = None, *,
                mode: str = "virtual") -> Iterator[tuple[str, str, Any]]:
    """Yield ``(dataset, path, events)`` for each file, as PFNano NanoEvents.

    Args:
        fileset: normalized fileset (:func:`load_fileset`).
        datasets: which datasets (all if ``None``); an unknown name raises
            :class:`~coffea_ad.errors.UnknownNameError`.
        mode: NanoEvents mode: ``"virtual"`` (default) reads only the branches the features
            touch; ``"eager"`` reads every branch (slow on PFNano with thousands).
    """
    from coffea.nanoevents import NanoEventsFactory

    from coffea_ad.schemas import schema_for

    names = list(fileset) if datasets is None else list(datasets)
    for name in names:
        if name not in fileset:
            raise UnknownNameError("dataset", name, fileset)
        # generated samples: a schema that does not look for collections they do not have
        schema = schema_for({name: fileset[name]})
        for path, tree in fileset[name]["files"].items():
            with warnings.catch_warnings():
                # slimmed CMS files lack cross-references (GenPart, Photon) that training
                # never reads
                warnings.filterwarnings("ignore", message="Missing cross-reference",
                                        category=RuntimeWarning)
                warnings.filterwarnings("ignore", message="Branch .* already exists",
                                        category=RuntimeWarning)
                events = NanoEventsFactory.from_root(
                    {path: tree}, schemaclass=schema, mode=mode).events()
            yield name, path, events


@dataclass
class JetTable:
    """Per-jet rows of one dataset: features and the columns needed to weight/split them.

    Attributes:
        names: feature names (columns of ``x``).
        x: ``[n_jets, n_features]`` float32.
        pt: ``[n_jets]`` jet p_T (for p_T-flattening weights).
        weight: ``[n_jets]`` the event's generator weight.
        event: ``[n_jets]`` running event number over the dataset's files (splits keep the
            jets of one event together).
        jet_index: ``[n_jets]`` position of the jet in its event (0 = leading).
        extra: more per-jet columns (e.g. event-level m_T broadcast to jets).
    """

    names: list[str]
    x: np.ndarray
    pt: np.ndarray
    weight: np.ndarray
    event: np.ndarray
    jet_index: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: np.ndarray) -> JetTable:
        """Rows ``idx`` (an index or boolean mask)."""
        return JetTable(self.names, self.x[idx], self.pt[idx], self.weight[idx], self.event[idx],
                        self.jet_index[idx], {k: v[idx] for k, v in self.extra.items()})


def jet_rows(events, names: Sequence[str], *, jets: str = "FatJet", max_jets: int = 2,
             min_pt: float = 0.0, event_columns: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Per-jet feature rows of the ``max_jets`` leading jets with ``pt > min_pt``.

    Args:
        events: NanoEvents (``events * ...``).
        names: feature names of :data:`coffea_ad.features.JET_FEATURES`.
        jets: jet collection.
        max_jets: keep at most this many leading jets per event (NanoAOD stores them
            p_T-ordered).
        min_pt: p_T threshold in GeV.
        event_columns: fields of :func:`coffea_ad.features.event_variables` (e.g. ``"mt"``)
            to copy onto each jet of the event (for DisCo or mass-sculpting checks).

    Returns:
        ``{"x": [n, F] float32, "pt", "weight", "event" (index in ``events``), "jet_index"}``
        plus one ``[n]`` column per ``event_columns`` entry.
    """
    from coffea_ad.features import jet_features

    feats = jet_features(events, list(names), jets=jets)[:, :max_jets]
    pt = events[jets].pt[:, :max_jets]
    keep = pt > min_pt
    event_idx = ak.broadcast_arrays(np.arange(len(events)), pt)[0]
    jet_idx = ak.local_index(pt, axis=1)
    if "genWeight" in ak.fields(events):
        w = ak.broadcast_arrays(ak.values_astype(events.genWeight, np.float64), pt)[0]
    else:  # real data has no generator weight: every jet counts once
        w = ak.ones_like(pt, dtype=np.float64)
    cols = [ak.to_numpy(ak.flatten(feats[n][keep], axis=None)).astype(np.float32) for n in names]
    x = np.stack(cols, axis=1) if cols else np.zeros((0, 0), np.float32)
    extra = {}
    if event_columns:
        from coffea_ad.features import event_variables

        ev = event_variables(events, jets=jets)
        for col in event_columns:
            if col not in ak.fields(ev):
                raise UnknownNameError("event variable", col, ak.fields(ev))
            per_jet = ak.broadcast_arrays(ev[col], pt)[0]
            extra[col] = ak.to_numpy(ak.flatten(per_jet[keep])).astype(np.float32)
    return {
        **extra,
        "x": x.reshape(-1, len(names)),
        "pt": ak.to_numpy(ak.flatten(pt[keep])).astype(np.float32),
        "weight": ak.to_numpy(ak.flatten(w[keep])).astype(np.float32),
        "event": ak.to_numpy(ak.flatten(event_idx[keep])).astype(np.int64),
        "jet_index": ak.to_numpy(ak.flatten(jet_idx[keep])).astype(np.int16),
    }


def load_jet_tables(fileset: Fileset | str | Path, names: Sequence[str], *,
                    datasets: Sequence[str] | None = None, jets: str = "FatJet",
                    max_jets: int = 2, min_pt: float = 0.0,
                    event_columns: Sequence[str] = ()) -> dict[str, JetTable]:
    """Read every file of ``datasets`` into one :class:`JetTable` per dataset.

    See :func:`jet_rows` for the arguments (``event_columns`` land in ``JetTable.extra``).
    Event numbers run on across a dataset's files.
    """
    fs = load_fileset(fileset)
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    offsets: dict[str, int] = {}
    for name, _path, events in iter_events(fs, datasets):
        t = jet_rows(events, names, jets=jets, max_jets=max_jets, min_pt=min_pt,
                     event_columns=event_columns)
        t["event"] = t["event"] + offsets.get(name, 0)
        offsets[name] = offsets.get(name, 0) + len(events)
        parts.setdefault(name, []).append(t)
    out = {}
    for name in (list(fs) if datasets is None else datasets):
        ps = parts.get(name, [])
        if not ps:
            ps = [{"x": np.zeros((0, len(names)), np.float32), "pt": np.zeros(0, np.float32),
                   "weight": np.zeros(0, np.float32), "event": np.zeros(0, np.int64),
                   "jet_index": np.zeros(0, np.int16),
                   **{c: np.zeros(0, np.float32) for c in event_columns}}]
        cat = {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}
        out[name] = JetTable(list(names), cat["x"], cat["pt"], cat["weight"], cat["event"],
                             cat["jet_index"], {c: cat[c] for c in event_columns})
    return out


def concat_tables(tables: Sequence[JetTable]) -> JetTable:
    """Concatenate tables with equal feature names; event numbers are made unique."""
    if not tables:
        raise InvalidArgumentError("concat_tables: expected at least one table, found none")
    offset = 0
    events = []
    for t in tables:
        events.append(t.event + offset)
        offset += int(t.event.max()) + 1 if len(t) else 0
    keys = set(tables[0].extra)
    return JetTable(
        tables[0].names, np.concatenate([t.x for t in tables]),
        np.concatenate([t.pt for t in tables]), np.concatenate([t.weight for t in tables]),
        np.concatenate(events), np.concatenate([t.jet_index for t in tables]),
        {k: np.concatenate([t.extra[k] for t in tables]) for k in keys},
    )


def split_indices(n: int, *, val_fraction: float, test_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into train/validation/test index arrays.

    Args:
        n: number of rows.
        val_fraction, test_fraction: fractions of rows (or of groups) for validation and test.
        seed: seed of the permutation (same seed -> same split).
        groups: optional ``[n]`` group label (e.g. event number): all rows of a group land in
            the same split, so the two jets of one event are never split between train and test.

    Returns:
        ``(train, val, test)`` sorted index arrays.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InvalidArgumentError(f"split_indices: expected fractions in [0, 1) summing below 1, found "
                         f"val {val_fraction} and test {test_fraction}")
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(n)
    uniq, inverse = np.unique(groups, return_inverse=True)
    perm = rng.permutation(len(uniq))
    n_test = round(test_fraction * len(uniq))
    n_val = round(val_fraction * len(uniq))
    which = np.empty(len(uniq), np.int8)  # 0 train, 1 val, 2 test
    which[perm[:n_test]] = 2
    which[perm[n_test:n_test + n_val]] = 1
    which[perm[n_test + n_val:]] = 0
    row = which[inverse]
    return tuple(np.flatnonzero(row == k) for k in (0, 1, 2))  # type: ignore[return-value]


def _event_weights(events) -> np.ndarray:
    if "genWeight" in ak.fields(events):
        return ak.to_numpy(events.genWeight).astype(np.float32)
    return np.ones(len(events), np.float32)  # real data: every event counts once


def event_rows(events, names: Sequence[str], *, kind: str = "vbs", jets: str | None = None,
               require: str | None = None, cuts: Mapping[str, Any] | None = None
               ) -> dict[str, np.ndarray]:
    """One row per event of event-level variables (VBS or dijet + MET).

    Args:
        events: NanoEvents.
        names: fields of :func:`coffea_ad.features.vbs_variables` (``kind="vbs"``) or of
            :func:`coffea_ad.features.event_variables` (``kind="dijet"``).
        kind: which feature function.
        jets: jet collection (default ``Jet`` for VBS, ``FatJet`` for dijet).
        require: keep events where this count field is >= 2 (e.g. ``"n_leptons"``); the
            defined-as-0 values of events without the objects are no physics. ``"vbs"``
            (``kind="vbs"`` only): keep the events of the full same-sign WW + 2 jets
            preselection with its default cuts
            (:func:`coffea_ad.features.vbs_selection`, what the ``vbs`` processor selects).
        cuts: with ``require="vbs"``, overrides of the default cuts
            (:data:`coffea_ad.features.VBS_CUTS`), e.g. a looser training region.

    Returns:
        ``{"x": [n, F] float32, "weight": [n], "event": [n]}``.
    """
    from coffea_ad import features

    if kind == "vbs":
        table = features.vbs_variables(events, jets=jets or "Jet")
    elif kind == "dijet":
        table = features.event_variables(events, jets=jets or "FatJet")
    else:
        raise UnknownNameError("event-variable kind", kind, ["vbs", "dijet"])
    for n in names:
        if n not in ak.fields(table):
            raise UnknownNameError(f"{kind} event variable", n, ak.fields(table))
    if require is None:
        keep = np.ones(len(events), bool)
    elif require == "vbs" and kind == "vbs":
        steps = features.vbs_selection(events, jets=jets or "Jet", **dict(cuts or {}))
        keep = np.ones(len(events), bool)
        for step in ak.fields(steps):
            keep &= ak.to_numpy(steps[step])
    else:
        keep = ak.to_numpy(table[require] >= 2)
    x = np.stack([ak.to_numpy(table[n]).astype(np.float32) for n in names], axis=1) if names \
        else np.zeros((len(events), 0), np.float32)
    return {"x": x[keep], "weight": _event_weights(events)[keep],
            "event": np.flatnonzero(keep).astype(np.int64)}


def dijet_rows(events, names: Sequence[str], *, jets: str = "FatJet",
               min_pt: float = 0.0) -> dict[str, np.ndarray]:
    """One row per event with two leading jets above ``min_pt``: per-jet features of both jets
    (``NAME_j1``, ``NAME_j2``) and the dijet mass (LHC-Olympics-style resonant AD inputs).

    Returns:
        ``{"x": [n, 2F] float32 (j1 features then j2 features), "mjj": [n], "weight", "event"}``.
    """
    from coffea_ad.features import dijet_mass, jet_features

    jet = events[jets]
    # NanoAOD jets are p_T-ordered: the second jet passing min_pt means both do
    second_pt = ak.to_numpy(ak.fill_none(ak.pad_none(jet.pt, 2, axis=1)[:, 1], 0.0))
    idx = np.flatnonzero(second_pt > min_pt)
    sel = events[idx]
    feats = jet_features(sel, list(names), jets=jets)
    cols = [ak.to_numpy(feats[n][:, i]).astype(np.float32) for i in (0, 1) for n in names]
    x = np.stack(cols, axis=1) if cols else np.zeros((len(idx), 0), np.float32)
    j = sel[jets]
    mjj = ak.to_numpy(dijet_mass(j[:, 0], j[:, 1])).astype(np.float32) if len(idx) else \
        np.zeros(0, np.float32)
    return {"x": x.reshape(len(idx), 2 * len(names)), "mjj": mjj,
            "weight": _event_weights(events)[idx], "event": idx.astype(np.int64)}


#: LHC Olympics inputs (Nachman & Shih, ANODE, arXiv:2001.04990; CATHODE, arXiv:2109.00546)
LHCO_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
LHCO_FEATURES_TAU32 = (*LHCO_FEATURES, "tau32_j1", "tau32_j2")


def lhco_rows(events, *, jets: str = "FatJet", lead_pt_min: float = 1200.0,
              tau32: bool = False) -> dict[str, np.ndarray]:
    """One row per event with two jets and a leading jet above ``lead_pt_min``: the LHC
    Olympics resonant-AD inputs of the two p_T-leading jets, ordered by mass.

    Columns of ``x`` (:data:`LHCO_FEATURES`, :data:`LHCO_FEATURES_TAU32` with ``tau32``):
    ``mj1`` = the lighter jet's mass, ``delta_mj`` = m_J2 - m_J1 >= 0, τ21 of the lighter and
    of the heavier jet (then τ32 of each), all in GeV or unitless; ``mjj`` is the dijet mass
    of the two jets. Computed with :func:`coffea_ad.features.jet_features` (``mass``,
    ``tau21``, ``tau32``: the same code the processors use).

    Returns:
        ``{"x": [n, 4 or 6] float32, "mjj": [n] float32, "pt_j1": [n] float32 (the leading
        jet's p_T, not an input: for checks in p_T bins), "weight", "event"}``.
    """
    from coffea_ad.features import dijet_mass, jet_features

    jet = events[jets]
    pts = ak.pad_none(jet.pt, 2, axis=1)
    lead = ak.to_numpy(ak.fill_none(pts[:, 0], 0.0))
    second = ak.to_numpy(ak.fill_none(pts[:, 1], 0.0))
    idx = np.flatnonzero((lead > lead_pt_min) & (second > 0.0))
    sel = events[idx]
    names = ["mass", "tau21", "tau32"] if tau32 else ["mass", "tau21"]
    feats = jet_features(sel, names, jets=jets)
    col = {n: np.stack([ak.to_numpy(feats[n][:, i]).astype(np.float32) for i in (0, 1)], axis=1)
           if len(idx) else np.zeros((0, 2), np.float32) for n in names}
    # mass order: column 0 is the lighter jet (ties keep the p_T order)
    order = np.argsort(col["mass"], axis=1, kind="stable")
    m = np.take_along_axis(col["mass"], order, axis=1)
    cols = [m[:, 0], m[:, 1] - m[:, 0]]
    for n in names[1:]:
        v = np.take_along_axis(col[n], order, axis=1)
        cols += [v[:, 0], v[:, 1]]
    x = np.stack(cols, axis=1).astype(np.float32)
    j = sel[jets]
    mjj = ak.to_numpy(dijet_mass(j[:, 0], j[:, 1])).astype(np.float32) if len(idx) else \
        np.zeros(0, np.float32)
    return {"x": x, "mjj": mjj, "pt_j1": lead[idx].astype(np.float32),
            "weight": _event_weights(events)[idx], "event": idx.astype(np.int64)}


def load_rows(fileset: Fileset | str | Path, rows, *, datasets: Sequence[str] | None = None,
              **options: Any) -> dict[str, dict[str, np.ndarray]]:
    """Apply a row function (:func:`event_rows`, :func:`dijet_rows`, :func:`jet_rows`, ...)
    to every file and concatenate per dataset.

    Args:
        fileset: coffea fileset or its JSON path.
        rows: ``rows(events, **options) -> dict of equal-length numpy arrays`` with an
            ``"event"`` column (event numbers run on across a dataset's files).
        datasets: which datasets (all if ``None``).

    Returns:
        ``{dataset: {column: array}}``.
    """
    fs = load_fileset(fileset)
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    offsets: dict[str, int] = {}
    for name, _path, events in iter_events(fs, datasets):
        t = rows(events, **options)
        t["event"] = t["event"] + offsets.get(name, 0)
        offsets[name] = offsets.get(name, 0) + len(events)
        parts.setdefault(name, []).append(t)
    return {name: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}
            for name, ps in parts.items()}


def dijet_score_rows(events, *, scorer, combine: str = "min", min_pt: float = 0.0
                     ) -> dict[str, np.ndarray]:
    """One row per event with two jets above ``min_pt``: a jet-level model's score of the two
    leading jets combined into one event score, and m_jj (inputs of the quantile regression).

    Args:
        events: NanoEvents.
        scorer: :class:`coffea_ad.inference.OnnxScorer` of a jet-level model.
        combine: ``"min"`` (both jets anomalous), ``"max"`` or ``"sum"`` (as in the
            model-agnostic dijet search, which studies all three).

    Returns:
        ``{"score": [n], "mjj": [n], "weight": [n], "event": [n]}``.
    """
    from coffea_ad.features import dijet_mass

    if combine not in ("min", "max", "sum"):
        raise UnknownNameError("score combination", combine, ["min", "max", "sum"])
    jets = scorer.contract.jets or "FatJet"
    second_pt = ak.to_numpy(ak.fill_none(ak.pad_none(events[jets].pt, 2, axis=1)[:, 1], 0.0))
    idx = np.flatnonzero(second_pt > min_pt)
    sel = events[idx]
    if len(idx) == 0:
        empty = np.zeros(0, np.float32)
        return {"score": empty, "mjj": empty, "weight": empty, "event": idx.astype(np.int64)}
    scores = scorer.score_events(sel)[:, :2]
    s1, s2 = ak.to_numpy(scores[:, 0]), ak.to_numpy(scores[:, 1])
    score = {"min": np.minimum, "max": np.maximum, "sum": np.add}[combine](s1, s2)
    j = sel[jets]
    mjj = ak.to_numpy(dijet_mass(j[:, 0], j[:, 1])).astype(np.float32)
    return {"score": score.astype(np.float32), "mjj": mjj,
            "weight": _event_weights(events)[idx], "event": idx.astype(np.int64)}


def particle_rows(events, *, features: Sequence[str], n: int = 50, jets: str = "FatJet",
                  max_jets: int = 2, min_pt: float = 0.0) -> dict[str, np.ndarray]:
    """Padded constituent lists of the ``max_jets`` leading jets with ``pt > min_pt``.

    Uses :func:`coffea_ad.features.jet_constituents` and
    :func:`coffea_ad.features.particles.particle_list` (p_T-ordered, padded with 0).

    Returns:
        ``{"x": [n_jets, n, F] float32, "mask": [n_jets, n] float32 (1 real), "pt",
        "weight", "event", "jet_index"}``.
    """
    from coffea_ad.features import jet_constituents
    from coffea_ad.features.particles import particle_list

    jet = events[jets][:, :max_jets]
    constituents = jet_constituents(events, jets=jets)[:, :max_jets]
    values, mask = particle_list(constituents, jet, n=n, features=list(features))
    pt = jet.pt
    keep = ak.to_numpy(ak.flatten(pt > min_pt))
    event_idx = ak.broadcast_arrays(np.arange(len(events)), pt)[0]
    w = ak.broadcast_arrays(_event_weights(events), pt)[0]
    return {
        "x": np.asarray(values, np.float32)[keep],
        "mask": np.asarray(mask, np.float32)[keep],
        "pt": ak.to_numpy(ak.flatten(pt)).astype(np.float32)[keep],
        "weight": ak.to_numpy(ak.flatten(w)).astype(np.float32)[keep],
        "event": ak.to_numpy(ak.flatten(event_idx)).astype(np.int64)[keep],
        "jet_index": ak.to_numpy(ak.flatten(ak.local_index(pt, axis=1))).astype(np.int16)[keep],
    }
