"""A simple, documented detector response that turns Pythia final states into PF candidates.

It is deliberately a parametrised toy of CMS particle flow, not a simulation: enough realism that
jets, leptons and missing momentum behave like reconstructed ones (and that semivisible jets show
MET aligned with a jet), one compiled pass (numba) over all particles of a chunk.

Response (all numbers are fields of :class:`DetectorConfig` and can be overridden with
``--set detector.<field>=value``):

1. Invisible: neutrinos (|pdgId| 12, 14, 16) and every stable dark-sector particle (|pdgId| 51-53
   and 4 900 000-4 999 999) leave nothing; MET is the negative vector sum of the visible PF
   candidates, so it includes both the invisible momentum and the resolution effects.
2. Acceptance: calorimeters |η| < ``calo_eta_max`` (5.0); tracker |η| < ``tracker_eta_max``
   (2.5); muon system |η| < ``muon_eta_max`` (2.4).
3. Classes (CMS PF pdgId conventions): charged particles inside the tracker with
   pT > ``track_pt_min`` become tracks (charged hadron ±211, electron ±11, muon ±13); charged
   hadrons and electrons outside it are seen by the calorimeters only and become neutral hadrons
   (130) and photons (22); muons outside the muon system are lost; photons (22) and neutral
   hadrons (130) need pT above ``photon_pt_min`` / ``neutral_hadron_pt_min``.
4. Resolution, Gaussian, on the magnitude (direction kept): tracks and muons
   σ(pT)/pT = a ⊕ b·pT (``track_res_a`` 1 %, ``track_res_b`` 1e-4 /GeV); electrons and photons
   σ(E)/E = s/√E ⊕ c (3 %, 0.5 %, CMS ECAL); neutral hadrons σ(E)/E = s/√E ⊕ c (100 %, 5 %, CMS
   HCAL).
5. Mass hypotheses: charged hadrons π± (0.1396 GeV), e, μ their masses, photons and neutral
   hadrons 0.
6. Impact parameters of tracks from the true production vertex (PV at the origin):
   d0 = (-x·py + y·px)/pT, dz = z - (x·px + y·py)/pT · pz/pT (cm), each smeared by
   σ = ``ip_res_a`` ⊕ ``ip_res_b``/pT (20 µm ⊕ 50 µm·GeV/pT). Neutral candidates get 0.

References:
    CMS Collaboration, "Particle-flow reconstruction and global event description with the
    CMS detector", JINST 12 (2017) P10003, arXiv:1706.04965.
    CMS Collaboration, "Description and performance of track and primary-vertex reconstruction
    with the CMS tracker", JINST 9 (2014) P10009, arXiv:1405.6569.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numba
import numpy as np

__all__ = [
    "INVISIBLE_IDS",
    "DetectorConfig",
    "is_invisible",
    "offsets_of",
    "simulate",
    "unflatten",
]

INVISIBLE_IDS = (12, 14, 16, 51, 52, 53)
"""|pdgId| of stable particles the detector does not see (plus all |pdgId| in 4.9e6-5e6)."""

_DARK_MIN, _DARK_MAX = 4_900_000, 5_000_000  # Hidden Valley |pdgId| range: all invisible when stable

_M_PION, _M_ELECTRON, _M_MUON = 0.13957, 0.000511, 0.10566


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the toy detector response (see the module docstring for their use)."""

    calo_eta_max: float = 5.0
    tracker_eta_max: float = 2.5
    muon_eta_max: float = 2.4
    track_pt_min: float = 0.5
    photon_pt_min: float = 0.5
    neutral_hadron_pt_min: float = 1.0
    track_res_a: float = 0.01
    track_res_b: float = 1e-4
    em_res_stochastic: float = 0.03
    em_res_constant: float = 0.005
    had_res_stochastic: float = 1.0
    had_res_constant: float = 0.05
    ip_res_a: float = 0.0020
    ip_res_b: float = 0.0050


def is_invisible(pdg_id: np.ndarray) -> np.ndarray:
    """True for neutrinos and stable dark-sector particles (``n * int -> n * bool``)."""
    a = np.abs(pdg_id)
    return np.isin(a, INVISIBLE_IDS) | ((a >= _DARK_MIN) & (a < _DARK_MAX))


def simulate(
    pdg_id: np.ndarray,
    charge: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    vertex: np.ndarray,
    counts: np.ndarray,
    *,
    config: DetectorConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Detector response of flat arrays of stable particles (all events of a chunk at once).

    Args:
        pdg_id, charge, px, py, pz: ``n`` stable particles (GeV, charge in units of e).
        vertex: ``n * 3`` production vertices (x, y, z) in mm.
        counts: particles per event (sums to ``n``).
        config: the response parameters.
        rng: random generator for the smearing (seeded by the caller: reproducible).

    Returns:
        ``(pfcands, pf_counts)``: flat PF-candidate columns ``pt, eta, phi, mass`` (float32),
        ``pdgId, charge`` (int32), ``d0, dz`` (float32, cm), ``px, py, pz, E`` (float64, for
        clustering) in the input order with rejected particles removed, and the number of
        candidates per event.
    """
    c = config
    f32, f64, i32, pf_counts = _response_kernel(
        np.asarray(pdg_id, dtype=np.int64), np.asarray(charge, dtype=np.int64),
        *(np.asarray(v, dtype=np.float64) for v in (px, py, pz)),
        *(np.asarray(vertex[:, k], dtype=np.float64) for k in range(3)), np.asarray(counts, dtype=np.int64), rng,
        c.calo_eta_max, c.tracker_eta_max, c.muon_eta_max, c.track_pt_min, c.photon_pt_min,
        c.neutral_hadron_pt_min, c.track_res_a, c.track_res_b, c.em_res_stochastic, c.em_res_constant,
        c.had_res_stochastic, c.had_res_constant, c.ip_res_a, c.ip_res_b,
    )
    pf = dict(zip(("pt", "eta", "phi", "mass", "d0", "dz"), f32, strict=True))
    pf.update(zip(("px", "py", "pz", "E"), f64, strict=True))
    pf.update(zip(("pdgId", "charge"), i32, strict=True))
    return pf, pf_counts


_CHAD, _ELECTRON, _MUON, _PHOTON, _NHAD = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _response_kernel(
    pdg_id, charge, px, py, pz, vx, vy, vz, counts, rng,
    calo_eta_max, tracker_eta_max, muon_eta_max, track_pt_min, photon_pt_min, nhad_pt_min,
    track_res_a, track_res_b, em_s, em_c, had_s, had_c, ip_a, ip_b,
):
    # one pass over the particles in input order; normals are drawn only for visible
    # candidates (the scale), then for tracks (d0, dz), from the caller's seeded generator
    n = len(pdg_id)
    f32 = np.empty((6, n), np.float32)  # pt, eta, phi, mass, d0, dz
    f64 = np.empty((4, n), np.float64)  # px, py, pz, E
    i32 = np.empty((2, n), np.int32)  # pdgId, charge
    pf_counts = np.zeros(len(counts), np.int64)
    k = start = 0
    for ev in range(len(counts)):
        stop = start + counts[ev]
        for j in range(start, stop):
            pt_true = np.sqrt(px[j] * px[j] + py[j] * py[j])
            a = abs(pdg_id[j])
            q = charge[j]
            if not pt_true > 0 or a in INVISIBLE_IDS or _DARK_MIN <= a < _DARK_MAX:
                continue
            eta = np.arcsinh(pz[j] / pt_true)
            abseta = abs(eta)
            if not abseta < calo_eta_max:
                continue
            track = q != 0 and abseta < tracker_eta_max and pt_true > track_pt_min
            if a == 13:
                if not (track and abseta < muon_eta_max):
                    continue  # not identified outside the muon system, and no calorimeter deposit
                kind = _MUON
            elif track:
                kind = _ELECTRON if a == 11 else _CHAD
            else:
                kind = _PHOTON if a == 22 or a == 11 else _NHAD
            p_true = np.sqrt(pt_true * pt_true + pz[j] * pz[j])
            if kind in (_ELECTRON, _PHOTON):  # electrons: the ECAL measurement dominates
                sigma = np.hypot(em_s / np.sqrt(max(p_true, 1e-3)), em_c)
            elif kind == _NHAD:
                sigma = np.hypot(had_s / np.sqrt(max(p_true, 1e-3)), had_c)
            else:
                sigma = np.hypot(track_res_a, track_res_b * pt_true)
            pt = pt_true * max(1.0 + sigma * rng.standard_normal(), 0.0)
            if (kind == _PHOTON and not pt > photon_pt_min) or (kind == _NHAD and not pt > nhad_pt_min):
                continue
            mass = 0.0
            sign = 1 if q > 0 else -1
            if kind == _CHAD:
                pid, mass = 211 * sign, _M_PION
            elif kind in (_ELECTRON, _MUON):
                pid, mass = pdg_id[j], (_M_ELECTRON if kind == _ELECTRON else _M_MUON)
            else:
                pid, sign = (22 if kind == _PHOTON else 130), 0
            d0 = dz = 0.0
            if kind <= _MUON:  # tracks: impact parameters from the production point, mm -> cm
                x, y, z = vx[j] / 10.0, vy[j] / 10.0, vz[j] / 10.0
                ip_sigma = np.hypot(ip_a, ip_b / pt_true)
                d0 = (-x * py[j] + y * px[j]) / pt_true + ip_sigma * rng.standard_normal()
                dz = z - (x * px[j] + y * py[j]) / pt_true * pz[j] / pt_true + ip_sigma * rng.standard_normal()
            phi = np.arctan2(py[j], px[j])
            scale = pt / pt_true  # direction kept
            cx, cy, cz = px[j] * scale, py[j] * scale, pz[j] * scale
            f32[0, k], f32[1, k], f32[2, k], f32[3, k], f32[4, k], f32[5, k] = pt, eta, phi, mass, d0, dz
            f64[0, k], f64[1, k], f64[2, k] = cx, cy, cz
            f64[3, k] = np.sqrt(cx * cx + cy * cy + cz * cz + mass * mass)
            i32[0, k], i32[1, k] = pid, sign
            pf_counts[ev] += 1
            k += 1
        start = stop
    return f32[:, :k], f64[:, :k], i32[:, :k], pf_counts


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """``n`` counts -> ``n + 1`` int64 offsets (0, c0, c0 + c1, ...)."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def unflatten(columns: dict[str, np.ndarray], counts: np.ndarray) -> ak.Array:
    """Flat columns + per-event counts -> ``events * var * record`` awkward array.

    Built from the layout (one ListOffsetArray over a RecordArray of the given buffers): no
    broadcasting, no copy beyond making each column contiguous.
    """
    offsets = offsets_of(np.asarray(counts, dtype=np.int64))
    content = ak.contents.RecordArray(
        [ak.contents.NumpyArray(np.ascontiguousarray(c)) for c in columns.values()],
        list(columns),
        length=int(offsets[-1]),
    )
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))
