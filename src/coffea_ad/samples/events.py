"""One chunk of events: Pythia -> detector response -> jets, leptons, MET -> NanoAOD columns.

:class:`EventMaker` owns one initialised Pythia instance (one seed) and turns
``Pythia.nextBatch`` output (awkward arrays of the whole event record) into the branch groups
that :class:`coffea_ad.samples.writer.EventsWriter` writes. Everything after Pythia is columnar
over the chunk.

Truth written for validation (not present in real data, named so that no one mistakes it):

- ``FatJet_isDark`` (bool): the jet axis is within ΔR < 0.8 of a dark quark of the hard
  process (|pdgId| 4900101, semivisible-jet signal).
- ``FatJet_isResonance`` (bool): within ΔR < 0.8 of a hard-process resonance the process
  declares (X/Y for ``zprime_xy``; t, W, Z for the SM processes; W for ``hpp``).
- ``GenPart_*``: the hard process only (Pythia |status| 22-29: resonances and their decay
  products), with NanoAOD's ``genPartIdxMother`` (the nearest kept ancestor, -1 if none).
- ``GenMET_pt/phi``: the vector sum of the invisible particles (neutrinos, dark matter).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import awkward as ak
import numba
import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import ComputationError, InvalidArgumentError
from coffea_ad.samples.clustering import cluster_flat, substructure_flat
from coffea_ad.samples.detector import DetectorConfig, is_invisible, offsets_of, simulate, unflatten
from coffea_ad.samples.processes import get_process, pythia_commands

__all__ = ["EventMaker"]

_MATCH_DR = 0.8
_ELECTRON_PT_MIN, _MUON_PT_MIN = 5.0, 3.0  # NanoAOD Electron / Muon thresholds [GeV]
_ISO_DR = 0.3


class EventMaker:
    """Generate chunks of NanoAOD-layout events for one process and seed.

    Args:
        process: a key of :data:`coffea_ad.samples.PROCESSES`.
        settings: resolved settings (:func:`coffea_ad.samples.processes.resolve_settings`).
        seed: Pythia seed (1 ... 900 000 000); the detector smearing is seeded from it too.

    Attributes:
        timings: CPU seconds (``time.process_time``) spent in each stage of :meth:`make` so far:
            ``pythia`` (event generation and the record's conversion), ``detector``,
            ``clustering`` (FastJet), ``substructure`` (soft drop, τ1..τ4), ``other`` (truth,
            leptons, MET, building the columns). Writing is the writer's.
    """

    def __init__(self, process: str, settings: Mapping[str, Any], *, seed: int):
        pythia8mc = require("pythia8mc", purpose="event generation in coffea_ad.samples")
        self.spec = get_process(process)
        self.settings = dict(settings)
        self.detector = DetectorConfig(
            **{k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("detector.")}
        )
        self.pythia = pythia8mc.Pythia("", False)
        for cmd in pythia_commands(process, settings, seed=seed):
            if not self.pythia.readString(cmd):
                raise InvalidArgumentError(f"Pythia rejected the command {cmd!r} (process {process!r})")
        if not self.pythia.init():
            raise ComputationError(f"Pythia failed to initialise process {process!r} with {settings}")
        self.rng = np.random.default_rng(seed)
        self._charge_keys = np.zeros(0, dtype=np.int32)
        self._charge_values = np.zeros(0, dtype=np.int32)
        self.timings: dict[str, float] = defaultdict(float)

    def _staged(self) -> float:
        return sum(self.timings[k] for k in ("detector", "clustering", "substructure"))

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.timings[name] += time.process_time() - start

    # ------------------------------------------------------------------ bookkeeping
    def cross_section_pb(self) -> tuple[float, float]:
        """Pythia's estimate of the generated cross-section and its error, in pb (times the
        process's ``xsec_factor``, e.g. the SVJ coupling rescaling)."""
        info = self.pythia.infoPython()
        factor = self.spec.xsec_factor(self.settings) if self.spec.xsec_factor else 1.0
        return info.sigmaGen() * 1e9 * factor, info.sigmaErr() * 1e9 * factor  # mb -> pb

    def _charges(self, ids: np.ndarray) -> np.ndarray:
        # charge by pdgId from Pythia's particle data, cached in a sorted table: a chunk has
        # ~10^5 particles of a few dozen species
        keys, values = self._charge_keys, self._charge_values
        pos = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
        known = keys[pos] == ids if len(keys) else np.zeros(len(ids), dtype=bool)
        if not known.all():
            pdata = self.pythia.particleData
            new = np.unique(ids[~known])
            keys = np.concatenate([keys, new])
            values = np.concatenate([values, [round(pdata.charge(int(pid))) for pid in new.tolist()]])
            order = np.argsort(keys)
            self._charge_keys, self._charge_values = keys[order], values[order].astype(np.int32)
            return self._charges(ids)
        return values[pos]

    def _next(self, n: int) -> ak.Array:
        parts = []
        missing = n
        while missing > 0:  # nextBatch skips failed events: top up until n
            got = self.pythia.nextBatch(missing)
            if len(got) == 0:
                raise ComputationError("Pythia returned no events (every event failed)")
            parts.append(got)
            missing -= len(got)
        return parts[0] if len(parts) == 1 else ak.concatenate(parts)

    # ------------------------------------------------------------------ one chunk
    def make(self, n: int, *, first_event: int, run: int = 1, lumi: int = 1) -> dict[str, Any]:
        """Generate ``n`` events and return their branch groups.

        Args:
            n: number of events.
            first_event: ``event`` number of the first one (numbers are consecutive).
            run, lumi: ``run`` and ``luminosityBlock`` values.

        Returns:
            Collection name -> ``n * var * record`` and scalar branch name -> numpy array.
        """
        with self._stage("pythia"):
            batch = self._next(n)
        start, staged = time.process_time(), self._staged()
        prt = batch.prt
        n_all = np.asarray(ak.num(prt), dtype=np.int64)
        record = {
            "id": _flat(prt.id), "status": _flat(prt.status), "mother1": _flat(prt.mother1),
            "m": _flat(prt.m), **{c: _flat(prt.p[c]) for c in ("px", "py", "pz")},
        }
        event_all = np.repeat(np.arange(n), n_all)
        final = record["status"] > 0
        counts = np.bincount(event_all[final], minlength=n)
        ids = record["id"][final].astype(np.int32)
        px, py, pz = (np.asarray(record[c][final], dtype=np.float64) for c in ("px", "py", "pz"))
        vertex = _vertex(prt, final)
        charge = self._charges(ids)

        with self._stage("detector"):
            pf, pf_counts = simulate(ids, charge, px, py, pz, vertex, counts, config=self.detector, rng=self.rng)
        pf_offsets = offsets_of(pf_counts)
        pf_event = np.repeat(np.arange(n), pf_counts)

        # truth: invisible momentum and the hard process
        invis = is_invisible(ids)
        event_of = np.repeat(np.arange(n), counts)
        gx = np.bincount(event_of[invis], weights=px[invis], minlength=n)
        gy = np.bincount(event_of[invis], weights=py[invis], minlength=n)
        genpart, gen_counts = _genpart(record, n_all, event_all)

        chunk: dict[str, Any] = {
            "run": np.full(n, run, dtype=np.uint32),
            "luminosityBlock": np.full(n, lumi, dtype=np.uint32),
            "event": np.arange(first_event, first_event + n, dtype=np.uint64),
            "genWeight": np.asarray(batch.info.weights[:, 0], dtype=np.float32),
        }
        truth = (genpart, gen_counts)
        for name, radius, key, fat in (("FatJet", 0.8, "fatjet_min_pt", True), ("Jet", 0.4, "jet_min_pt", False)):
            jets, links = self._jets(pf, pf_offsets, truth, radius=radius, min_pt=float(self.settings[key]), fat=fat)
            chunk[name], chunk[f"{name}PFCands"] = jets, links
        chunk["PFCands"] = unflatten(
            {k: pf[k] for k in ("pt", "eta", "phi", "mass", "pdgId", "charge", "d0", "dz")}, pf_counts
        )
        chunk["Electron"] = _leptons(pf, pf_offsets, pf_event, 11, _ELECTRON_PT_MIN)
        chunk["Muon"] = _leptons(pf, pf_offsets, pf_event, 13, _MUON_PT_MIN)
        mx = -np.bincount(pf_event, weights=pf["px"], minlength=n)
        my = -np.bincount(pf_event, weights=pf["py"], minlength=n)
        chunk["MET_pt"] = np.hypot(mx, my).astype(np.float32)
        chunk["MET_phi"] = np.arctan2(my, mx).astype(np.float32)
        chunk["MET_sumEt"] = np.bincount(pf_event, weights=pf["pt"], minlength=n).astype(np.float32)
        chunk["GenMET_pt"] = np.hypot(gx, gy).astype(np.float32)
        chunk["GenMET_phi"] = np.arctan2(gy, gx).astype(np.float32)
        chunk["GenPart"] = unflatten(genpart, gen_counts)
        self.timings["other"] += time.process_time() - start - (self._staged() - staged)
        return chunk

    def _jets(
        self,
        pf: dict[str, np.ndarray],
        pf_offsets: np.ndarray,
        truth: tuple[dict[str, np.ndarray], np.ndarray],
        *,
        radius: float,
        min_pt: float,
        fat: bool,
    ) -> tuple[ak.Array, ak.Array]:
        p4 = [pf[c] for c in ("px", "py", "pz", "E")]
        with self._stage("clustering"):
            jets = cluster_flat(*p4, pf_offsets, radius=radius, min_pt=min_pt)
        jet_counts = np.diff(jets.offsets)
        cons_counts = np.diff(jets.constituent_offsets)
        jet_event = np.repeat(np.arange(len(jet_counts)), jet_counts)
        # constituent -> position in the chunk's flat PF candidates
        glob = jets.constituents + np.repeat(pf_offsets[:-1][jet_event], cons_counts)
        out = {k: jets.columns[k].astype(np.float32) for k in ("pt", "eta", "phi", "mass")}
        if fat:
            with self._stage("substructure"):
                out.update(substructure_flat(
                    *(c[glob] for c in p4), jets.constituent_offsets, r0=radius,
                    backend=self.settings.get("substructure", "numba"),
                ))
        out["nConstituents"] = cons_counts.astype(np.int32)
        if fat:
            for branch, ids in (("isDark", self.spec.dark_ids), ("isResonance", self.spec.resonance_ids)):
                out[branch] = _match(jets.columns["eta"], jets.columns["phi"], jet_event, truth, ids)
        # <Jet>PFCands: one entry per (jet, constituent), grouped jet by jet as PFNano does
        local_jet = np.arange(len(jet_event)) - jets.offsets[:-1][jet_event]
        links = {
            "pt": pf["pt"][glob],
            "jetIdx": np.repeat(local_jet, cons_counts).astype(np.int32),
            "pFCandsIdx": jets.constituents.astype(np.int32),
        }
        link_counts = np.bincount(jet_event, weights=cons_counts, minlength=len(jet_counts)).astype(np.int64)
        return unflatten(out, jet_counts), unflatten(links, link_counts)


def _flat(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.flatten(array, axis=None))


def _vertex(prt: ak.Array, select: np.ndarray) -> np.ndarray:
    """Production vertices (x, y, z) [mm] of the selected particles, 0 where Pythia has none."""
    flat = ak.flatten(prt.vProd, axis=1).layout  # option[record]: vProd is absent at the origin
    if isinstance(flat, ak.contents.IndexedOptionArray) and flat.content.is_record:
        # straight from the buffers: ak.fill_none on the whole record costs ~3x more
        index = np.asarray(flat.index)[select]
        present = index >= 0
        index = np.where(present, index, 0)
        cols = [np.asarray(flat.content.content(c).data, dtype=np.float64) for c in ("px", "py", "pz")]
        # stacked as 3 rows (one memcpy each) and returned as the n * 3 view of them
        return np.stack([np.where(present, c[index], 0.0) for c in cols]).T
    return np.stack([_flat(ak.fill_none(prt.vProd[c], 0.0))[select] for c in ("px", "py", "pz")]).T


def _genpart(
    record: dict[str, np.ndarray], n_all: np.ndarray, event_all: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """NanoAOD GenPart columns (hard process, see the module docstring) and counts per event."""
    astat = np.abs(record["status"])
    keep = (astat >= 22) & (astat <= 29)
    starts = offsets_of(n_all)[:-1]
    kept_counts = np.bincount(event_all[keep], minlength=len(n_all))
    kept_starts = offsets_of(kept_counts)[:-1]
    global_kept = np.flatnonzero(keep)
    event_of = event_all[global_kept]
    mother_idx = _nearest_kept_mother(global_kept, event_of, starts, kept_starts, keep, record["mother1"])
    px, py, pz = (np.asarray(record[c][keep], dtype=np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    cols = {
        "pt": pt.astype(np.float32),
        "eta": eta.astype(np.float32),
        "phi": np.arctan2(py, px).astype(np.float32),
        "mass": record["m"][keep].astype(np.float32),
        "pdgId": record["id"][keep].astype(np.int32),
        "status": record["status"][keep].astype(np.int32),
        "genPartIdxMother": mother_idx,  # int32 from the kernel
    }
    return cols, kept_counts


@numba.njit(cache=True)
def _nearest_kept_mother(global_kept, event_of, starts, kept_starts, keep, mother1):
    # NanoAOD convention: the mother is the nearest *kept* ancestor. Shower recoil copies (e.g.
    # of a top before it decays) sit between a resonance and its decay products, so climb the
    # mother1 chain until a kept particle (its rank in the event's GenPart list) or the beams (-1)
    out = np.full(len(global_kept), -1, np.int32)
    for k in range(len(global_kept)):
        start = starts[event_of[k]]
        local = mother1[global_kept[k]]
        for _ in range(64):  # chains are a few copies long; 64 bounds pathological records
            if local <= 0:
                break
            if keep[start + local]:
                out[k] = np.searchsorted(global_kept, start + local) - kept_starts[event_of[k]]
                break
            local = mother1[start + local]
    return out


def _match(
    eta: np.ndarray,
    phi: np.ndarray,
    jet_event: np.ndarray,
    truth: tuple[dict[str, np.ndarray], np.ndarray],
    ids: tuple[int, ...],
) -> np.ndarray:
    """True for jets within ΔR < 0.8 of a GenPart whose |pdgId| is in ``ids``."""
    genpart, counts = truth
    if not ids:
        return np.zeros(len(eta), dtype=bool)
    is_target = np.isin(np.abs(genpart["pdgId"]), ids)
    gen_event = np.repeat(np.arange(len(counts)), counts)
    target_offsets = offsets_of(np.bincount(gen_event[is_target], minlength=len(counts)))
    return _match_kernel(
        eta, phi, jet_event, genpart["eta"][is_target], genpart["phi"][is_target],
        target_offsets, _MATCH_DR**2,
    )


@numba.njit(cache=True)
def _match_kernel(eta, phi, jet_event, t_eta, t_phi, t_offsets, dr2max):
    out = np.zeros(len(eta), np.bool_)
    for j in range(len(eta)):
        ev = jet_event[j]
        for t in range(t_offsets[ev], t_offsets[ev + 1]):
            dphi = (phi[j] - t_phi[t] + np.pi) % (2 * np.pi) - np.pi
            if (eta[j] - t_eta[t]) ** 2 + dphi**2 < dr2max:
                out[j] = True
                break
    return out


def _leptons(
    pf: dict[str, np.ndarray], offsets: np.ndarray, pf_event: np.ndarray, abs_id: int, pt_min: float
) -> ak.Array:
    is_lep = (np.abs(pf["pdgId"]) == abs_id) & (pf["pt"] > pt_min)
    flat_lep = np.flatnonzero(is_lep)
    cols = [np.asarray(pf[c], dtype=np.float64) for c in ("eta", "phi", "pt")]
    iso = _relative_isolation(flat_lep, pf_event[flat_lep], *cols, offsets, _ISO_DR**2)
    out = {k: pf[src][is_lep] for k, src in (
        ("pt", "pt"), ("eta", "eta"), ("phi", "phi"), ("mass", "mass"), ("charge", "charge"),
        ("pdgId", "pdgId"), ("dxy", "d0"), ("dz", "dz"),
    )}
    out["pfRelIso03_all"] = iso.astype(np.float32)
    return unflatten(out, np.bincount(pf_event[is_lep], minlength=len(offsets) - 1))


@numba.njit(cache=True)
def _relative_isolation(lep_index, lep_event, eta, phi, pt, offsets, dr2max):
    """Σ pT of the other PF candidates within ΔR < 0.3 of each lepton, divided by its pT
    (NanoAOD ``pfRelIso03_all`` without pile-up correction). One loop per lepton over its
    event's candidates: leptons are few, candidates a few hundred."""
    out = np.zeros(len(lep_index))
    for k in range(len(lep_index)):
        i, ev = lep_index[k], lep_event[k]
        total = 0.0
        for j in range(offsets[ev], offsets[ev + 1]):
            if j == i:
                continue
            dphi = abs(phi[i] - phi[j])
            if dphi > np.pi:
                dphi = 2.0 * np.pi - dphi
            if (eta[i] - eta[j]) ** 2 + dphi * dphi < dr2max:
                total += pt[j]
        out[k] = total / pt[i]
    return out
