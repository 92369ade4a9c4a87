"""A simple, documented detector response that turns Pythia final states into PF candidates.

It is deliberately a parametrised toy of CMS particle flow, not a simulation: enough realism that
jets, leptons and missing momentum behave like reconstructed ones (and that semivisible jets show
MET aligned with a jet), fully columnar (numpy over all particles of a chunk at once).

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
    return np.isin(a, INVISIBLE_IDS) | ((a >= 4_900_000) & (a < 5_000_000))


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
    pt_true = np.hypot(px, py)
    safe = pt_true > 0
    eta = np.where(safe, np.arcsinh(np.divide(pz, pt_true, out=np.zeros_like(pz), where=safe)), 0.0)
    phi = np.arctan2(py, px)
    absid = np.abs(pdg_id)
    abseta = np.abs(eta)

    visible = ~is_invisible(pdg_id) & safe & (abseta < config.calo_eta_max)
    charged = charge != 0
    in_tracker = abseta < config.tracker_eta_max
    is_mu = absid == 13
    is_e = absid == 11
    track = visible & charged & in_tracker & (pt_true > config.track_pt_min)
    muon = track & is_mu & (abseta < config.muon_eta_max)
    track &= ~is_mu | muon  # a muon outside the muon system is not identified: dropped below
    electron = track & is_e
    chad = track & ~is_e & ~is_mu
    # charged particles the tracker misses still deposit their energy in the calorimeters
    calo_only = visible & ~track & ~is_mu
    photon = calo_only & ((absid == 22) | is_e)
    nhad = calo_only & ~photon

    n = len(pdg_id)
    p_true = np.sqrt(pt_true**2 + pz**2)
    sigma = np.zeros(n)
    trk = chad | muon | electron
    sigma[trk] = np.hypot(config.track_res_a, config.track_res_b * pt_true[trk])
    em = photon | electron  # electrons: ECAL measurement dominates at these energies
    sigma[em] = np.hypot(config.em_res_stochastic / np.sqrt(np.maximum(p_true[em], 1e-3)), config.em_res_constant)
    sigma[nhad] = np.hypot(config.had_res_stochastic / np.sqrt(np.maximum(p_true[nhad], 1e-3)), config.had_res_constant)
    scale = np.maximum(1.0 + sigma * rng.standard_normal(n), 0.0)
    pt = pt_true * scale

    keep = (chad | muon | electron) | (photon & (pt > config.photon_pt_min)) | (
        nhad & (pt > config.neutral_hadron_pt_min)
    )

    out_id = np.zeros(n, dtype=np.int32)
    sgn = np.sign(charge).astype(np.int32)
    out_id[chad] = 211 * sgn[chad]
    out_id[electron | muon] = pdg_id[electron | muon]
    out_id[photon] = 22
    out_id[nhad] = 130
    out_charge = np.where(trk, sgn, 0).astype(np.int32)
    mass = np.zeros(n)
    mass[chad], mass[electron], mass[muon] = _M_PION, _M_ELECTRON, _M_MUON

    # impact parameters from the true production point, mm -> cm
    x, y, z = vertex[:, 0] / 10.0, vertex[:, 1] / 10.0, vertex[:, 2] / 10.0
    with np.errstate(divide="ignore", invalid="ignore"):
        d0 = (-x * py + y * px) / pt_true
        dz = z - (x * px + y * py) / pt_true * pz / pt_true
        ip_sigma = np.hypot(config.ip_res_a, config.ip_res_b / pt_true)
    d0 = np.where(trk, d0 + ip_sigma * rng.standard_normal(n), 0.0)
    dz = np.where(trk, dz + ip_sigma * rng.standard_normal(n), 0.0)

    event_of = np.repeat(np.arange(len(counts)), counts)
    pf_counts = np.bincount(event_of[keep], minlength=len(counts))
    pt_k, eta_k, phi_k, m_k = pt[keep], eta[keep], phi[keep], mass[keep]
    pxk, pyk = pt_k * np.cos(phi_k), pt_k * np.sin(phi_k)
    pzk = pt_k * np.sinh(eta_k)
    ek = np.sqrt(pxk**2 + pyk**2 + pzk**2 + m_k**2)
    pf = {
        "pt": pt_k.astype(np.float32),
        "eta": eta_k.astype(np.float32),
        "phi": phi_k.astype(np.float32),
        "mass": m_k.astype(np.float32),
        "pdgId": out_id[keep],
        "charge": out_charge[keep],
        "d0": d0[keep].astype(np.float32),
        "dz": dz[keep].astype(np.float32),
        "px": pxk,
        "py": pyk,
        "pz": pzk,
        "E": ek,
    }
    return pf, pf_counts


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
