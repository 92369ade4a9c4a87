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

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numba
import numpy as np

from coffea_ad._optional import require
from coffea_ad.samples.clustering import cluster, gather, substructure
from coffea_ad.samples.detector import DetectorConfig, is_invisible, simulate, unflatten
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
                raise ValueError(f"Pythia rejected the command {cmd!r} (process {process!r})")
        if not self.pythia.init():
            raise RuntimeError(f"Pythia failed to initialise process {process!r} with {settings}")
        self.rng = np.random.default_rng(seed)
        self._charge: dict[int, int] = {}

    # ------------------------------------------------------------------ bookkeeping
    def cross_section_pb(self) -> tuple[float, float]:
        """Pythia's estimate of the generated cross-section and its error, in pb (times the
        process's ``xsec_factor``, e.g. the SVJ coupling rescaling)."""
        info = self.pythia.infoPython()
        factor = self.spec.xsec_factor(self.settings) if self.spec.xsec_factor else 1.0
        return info.sigmaGen() * 1e9 * factor, info.sigmaErr() * 1e9 * factor  # mb -> pb

    def _charges(self, ids: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(ids, return_inverse=True)
        pdata = self.pythia.particleData
        for pid in uniq.tolist():
            if pid not in self._charge:
                self._charge[pid] = round(pdata.charge(pid))
        return np.array([self._charge[p] for p in uniq.tolist()], dtype=np.int32)[inverse]

    def _next(self, n: int) -> ak.Array:
        parts = []
        missing = n
        while missing > 0:  # nextBatch skips failed events: top up until n
            got = self.pythia.nextBatch(missing)
            if len(got) == 0:
                raise RuntimeError("Pythia returned no events (every event failed)")
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
        batch = self._next(n)
        prt = batch.prt
        final = prt[prt.status > 0]
        counts = np.asarray(ak.num(final))
        ids = np.asarray(ak.flatten(final.id), dtype=np.int32)
        mom = final.p
        px, py, pz = (np.asarray(ak.flatten(mom[c]), dtype=np.float64) for c in ("px", "py", "pz"))
        vtx = final.vProd
        vertex = np.stack(
            [np.asarray(ak.fill_none(ak.flatten(vtx[c]), 0.0), dtype=np.float64) for c in ("px", "py", "pz")],
            axis=1,
        )
        charge = self._charges(ids)

        pf_cols, pf_counts = simulate(
            ids, charge, px, py, pz, vertex, counts, config=self.detector, rng=self.rng
        )
        pf = unflatten(pf_cols, pf_counts)

        # truth: invisible momentum and the hard process
        invis = is_invisible(ids)
        event_of = np.repeat(np.arange(n), counts)
        gx = np.bincount(event_of[invis], weights=px[invis], minlength=n)
        gy = np.bincount(event_of[invis], weights=py[invis], minlength=n)
        genpart = self._genpart(prt)

        chunk: dict[str, Any] = {
            "run": np.full(n, run, dtype=np.uint32),
            "luminosityBlock": np.full(n, lumi, dtype=np.uint32),
            "event": np.arange(first_event, first_event + n, dtype=np.uint64),
            "genWeight": np.asarray(batch.info.weights[:, 0], dtype=np.float32),
        }
        fat, fat_cands = self._jets(pf, genpart, radius=0.8, min_pt=float(self.settings["fatjet_min_pt"]), fat=True)
        jet, jet_cands = self._jets(pf, genpart, radius=0.4, min_pt=float(self.settings["jet_min_pt"]), fat=False)
        chunk["FatJet"], chunk["FatJetPFCands"] = fat, fat_cands
        chunk["Jet"], chunk["JetPFCands"] = jet, jet_cands
        chunk["PFCands"] = pf[["pt", "eta", "phi", "mass", "pdgId", "charge", "d0", "dz"]]
        chunk["Electron"] = self._leptons(pf, 11, _ELECTRON_PT_MIN)
        chunk["Muon"] = self._leptons(pf, 13, _MUON_PT_MIN)
        mx = -np.asarray(ak.sum(pf.px, axis=1), dtype=np.float64)
        my = -np.asarray(ak.sum(pf.py, axis=1), dtype=np.float64)
        chunk["MET_pt"] = np.hypot(mx, my).astype(np.float32)
        chunk["MET_phi"] = np.arctan2(my, mx).astype(np.float32)
        chunk["MET_sumEt"] = np.asarray(ak.sum(pf.pt, axis=1), dtype=np.float32)
        chunk["GenMET_pt"] = np.hypot(gx, gy).astype(np.float32)
        chunk["GenMET_phi"] = np.arctan2(gy, gx).astype(np.float32)
        chunk["GenPart"] = genpart
        return chunk

    def _genpart(self, prt: ak.Array) -> ak.Array:
        astat = np.abs(prt.status)
        keep = (astat >= 22) & (astat <= 29)
        n_all = np.asarray(ak.num(prt))
        starts = np.cumsum(n_all) - n_all
        flat_keep = np.asarray(ak.flatten(keep))
        # position of each kept particle inside its event's GenPart list, -1 if not kept
        kept_rank = np.full(len(flat_keep), -1, dtype=np.int64)
        kept_counts = np.asarray(ak.sum(keep, axis=1))
        kept_starts = np.cumsum(kept_counts) - kept_counts
        global_kept = np.flatnonzero(flat_keep)
        event_of = np.repeat(np.arange(len(n_all)), kept_counts)
        # rank within kept = running count of kept particles before it in the same event
        kept_rank[global_kept] = np.arange(len(global_kept)) - kept_starts[event_of]
        # NanoAOD convention: the mother is the nearest *kept* ancestor. Shower recoil copies
        # (e.g. of a top before it decays) sit between a resonance and its decay products, so
        # climb the mother1 chain, all kept particles at once, until a kept one or the beams.
        mother1 = np.asarray(ak.flatten(prt.mother1), dtype=np.int64)
        event_start = starts[event_of]
        local = mother1[global_kept]
        for _ in range(64):  # chains are a few copies long; 64 bounds pathological records
            pending = (local > 0) & (kept_rank[np.maximum(local, 0) + event_start] < 0)
            if not pending.any():
                break
            local = np.where(pending, mother1[np.maximum(local, 0) + event_start], local)
        mother_idx = np.where(local > 0, kept_rank[np.maximum(local, 0) + event_start], -1)
        sel = prt[keep]
        p = sel.p
        px, py, pz = (np.asarray(ak.flatten(p[c]), dtype=np.float64) for c in ("px", "py", "pz"))
        pt = np.hypot(px, py)
        eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
        cols = {
            "pt": pt.astype(np.float32),
            "eta": eta.astype(np.float32),
            "phi": np.arctan2(py, px).astype(np.float32),
            "mass": np.asarray(ak.flatten(sel.m), dtype=np.float32),
            "pdgId": np.asarray(ak.flatten(sel.id), dtype=np.int32),
            "status": np.asarray(ak.flatten(sel.status), dtype=np.int32),
            "genPartIdxMother": mother_idx.astype(np.int32),
        }
        return unflatten(cols, kept_counts)

    def _match(self, jets: ak.Array, genpart: ak.Array, ids: tuple[int, ...]) -> ak.Array:
        if not ids:
            return ak.values_astype(ak.zeros_like(jets.pt), bool)
        targets = genpart[_isin(genpart.pdgId, ids)]
        pairs = ak.cartesian([jets[["eta", "phi"]], targets[["eta", "phi"]]], nested=True)
        dphi = (pairs["0"].phi - pairs["1"].phi + np.pi) % (2 * np.pi) - np.pi
        dr2 = (pairs["0"].eta - pairs["1"].eta) ** 2 + dphi**2
        return ak.any(dr2 < _MATCH_DR**2, axis=2)

    def _jets(
        self, pf: ak.Array, genpart: ak.Array, *, radius: float, min_pt: float, fat: bool
    ) -> tuple[ak.Array, ak.Array]:
        jets, index = cluster(pf[["px", "py", "pz", "E"]], radius=radius, min_pt=min_pt)
        ncons = ak.num(index, axis=2)
        cols = {
            "pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass,
        }
        out = {k: ak.values_astype(v, np.float32) for k, v in cols.items()}
        if fat:
            sub = substructure(
                gather(pf[["px", "py", "pz", "E"]], index), r0=radius,
                backend=self.settings.get("substructure", "numba"),
            )
            nj = ak.num(jets)
            for k, v in sub.items():
                out[k] = ak.unflatten(v, nj)
        out["nConstituents"] = ak.values_astype(ncons, np.int32)
        if fat:
            out["isDark"] = self._match(jets, genpart, self.spec.dark_ids)
            out["isResonance"] = self._match(jets, genpart, self.spec.resonance_ids)
        jet_rec = ak.zip(out, depth_limit=2)
        # <Jet>PFCands: one entry per (jet, constituent), grouped jet by jet as PFNano does
        jet_idx = ak.values_astype(ak.local_index(index, axis=1) * ak.ones_like(index), np.int32)
        cand_idx = ak.values_astype(index, np.int32)
        cand_pt = gather(pf.pt, index)
        links = ak.zip(
            {
                "pt": ak.flatten(cand_pt, axis=2),
                "jetIdx": ak.flatten(jet_idx, axis=2),
                "pFCandsIdx": ak.flatten(cand_idx, axis=2),
            },
            depth_limit=2,
        )
        return jet_rec, links

    def _leptons(self, pf: ak.Array, abs_id: int, pt_min: float) -> ak.Array:
        is_lep = (abs(pf.pdgId) == abs_id) & (pf.pt > pt_min)
        lep = pf[is_lep]
        counts = np.asarray(ak.num(pf), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat_lep = np.flatnonzero(np.asarray(ak.flatten(is_lep)))
        cols = [np.asarray(ak.flatten(pf[c]), dtype=np.float64) for c in ("eta", "phi", "pt")]
        iso = _relative_isolation(flat_lep, np.searchsorted(offsets, flat_lep, side="right") - 1,
                                  *cols, offsets, _ISO_DR**2)
        return ak.zip(
            {
                "pt": lep.pt, "eta": lep.eta, "phi": lep.phi, "mass": lep.mass,
                "charge": lep.charge, "pdgId": lep.pdgId,
                "dxy": lep.d0, "dz": lep.dz,
                "pfRelIso03_all": ak.unflatten(iso.astype(np.float32), ak.num(lep)),
            },
            depth_limit=2,
        )


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


def _isin(values: ak.Array, ids: tuple[int, ...]) -> ak.Array:
    absval = abs(values)
    mask = absval == ids[0]
    for pid in ids[1:]:
        mask = mask | (absval == pid)
    return mask
