"""Event-level variables: m_jj, Δη_jj, Δφ_jj, the dijet + MET transverse mass m_T, min Δφ(MET, jet),
and the same-sign WW / VBS variables (lepton p_T and η, Zeppenfeld variables, m_ll).

All inputs are records with ``pt, eta, phi, mass`` (jets, leptons) or ``pt, phi`` (MET), so the
functions take NanoEvents collections, plain awkward records and dask-awkward arrays alike
(pure awkward arithmetic, no loop). Kinematics are computed in float64.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import WrongTypeError
from coffea_ad.features._columnar import delta_phi, dispatch, first_present

__all__ = ["VBS_CUTS", "dijet_mass", "event_variables", "transverse_mass", "vbs_selection",
           "vbs_selection_names", "vbs_variables"]


def _f64(array: Any) -> Any:
    """float64 values; a flat eager column without missing values becomes a numpy array, so
    the arithmetic on it runs as plain numpy ufuncs (~100x faster per operation than
    awkward's broadcasting of arrays that carry NanoEvents behaviours)."""
    if isinstance(array, np.ndarray):
        return array.astype(np.float64, copy=False)
    if isinstance(array, ak.Array) and array.ndim == 1 and ak.backend(array) == "cpu":
        try:
            return np.asarray(ak.to_numpy(array, allow_missing=False), dtype=np.float64)
        except ValueError:  # missing values: keep them as awkward options
            pass
    return ak.values_astype(array, np.float64)


def _as_awkward(x: Any) -> Any:
    return ak.Array(x) if isinstance(x, np.ndarray) else x


def _p4(obj: Any) -> tuple[Any, Any, Any, Any]:
    """(E, px, py, pz) of records with pt, eta, phi, mass (mass < 0 is taken as 0)."""
    pt, eta, phi = _f64(obj["pt"]), _f64(obj["eta"]), _f64(obj["phi"])
    mass = np.maximum(_f64(obj["mass"]), 0.0)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px * px + py * py + pz * pz + mass * mass)
    return energy, px, py, pz


def dijet_mass(jet1: ak.Array, jet2: ak.Array) -> ak.Array:
    """Invariant mass m_jj of two objects with ``pt, eta, phi, mass`` (float64).

    Returns:
        Same jaggedness as the inputs; m² < 0 from rounding is clipped to 0.
    """
    e1, x1, y1, z1 = _p4(jet1)
    e2, x2, y2, z2 = _p4(jet2)
    e, px, py, pz = e1 + e2, x1 + x2, y1 + y2, z1 + z2
    return _as_awkward(np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0)))


def transverse_mass(jet1: ak.Array, jet2: ak.Array, met: ak.Array) -> ak.Array:
    """Transverse mass of the dijet + MET system, as in the CMS semivisible-jet searches.

        m_T² = m_jj² + 2 (sqrt(m_jj² + p_T,jj²) · MET − p⃗_T,jj · M⃗ET)

    Reference: CMS, JHEP 06 (2022) 156, arXiv:2112.11125 (s-channel semivisible jets), Eq. 1;
    TreeMaker's ``MT_AK8`` is this quantity for the two leading AK8 jets.

    Args:
        jet1, jet2: ``events`` (or any jaggedness) records with ``pt, eta, phi, mass``, e.g.
            ``fatjets[:, 0]`` and ``fatjets[:, 1]``.
        met: records with ``pt, phi`` broadcastable to the jets (``events.MET``).

    Returns:
        m_T in the units of the inputs, float64, same jaggedness as the jets (None where an
        input is None); m_T² < 0 from rounding is clipped to 0.
    """
    return dispatch(_transverse_mass, jet1, jet2, met, label="transverse-mass")


def _transverse_mass(jet1: ak.Array, jet2: ak.Array, met: ak.Array) -> ak.Array:
    e1, x1, y1, z1 = _p4(jet1)
    e2, x2, y2, z2 = _p4(jet2)
    e, px, py, pz = e1 + e2, x1 + x2, y1 + y2, z1 + z2
    mjj2 = np.maximum(e * e - px * px - py * py - pz * pz, 0.0)
    pt2 = px * px + py * py
    met_pt, met_phi = _f64(met["pt"]), _f64(met["phi"])
    metx, mety = met_pt * np.cos(met_phi), met_pt * np.sin(met_phi)
    mt2 = mjj2 + 2.0 * (np.sqrt(mjj2 + pt2) * met_pt - (px * metx + py * mety))
    return _as_awkward(np.sqrt(np.maximum(mt2, 0.0)))


def _met_name(events: Any) -> str:
    # NanoAOD v15 renamed MET to PFMET
    return first_present(events, ("MET", "PFMET", "PuppiMET"), where="events",
                         needed_for="the MET event variables")


def event_variables(events: ak.Array, *, jets: str = "FatJet", n_dphi: int = 2) -> ak.Array:
    """Dijet + MET event variables of the semivisible-jet and dijet-resonance workflows.

    Uses the two leading (first two, NanoAOD is p_T-ordered) jets of ``events[jets]`` and the
    MET collection (``MET``, else ``PFMET`` of NanoAOD v15, else ``PuppiMET``).

    Args:
        events: NanoEvents (eager, virtual or dask-awkward).
        jets: jet collection name.
        n_dphi: number of leading jets entering min Δφ(MET, jet) (2 in the SVJ searches).

    Returns:
        ``events * {n_jets, mjj, deta_jj, dphi_jj, mt, met, met_over_mt, dphi_min}``: int32
        ``n_jets``, the rest float32. Defined values where the event has fewer than two jets:
        mjj = deta_jj = dphi_jj = mt = met_over_mt = 0; met_over_mt = 0 where m_T = 0;
        dphi_min = π (the largest possible) for an event without jets. Δφ are wrapped to
        [0, π] (absolute values), Δη_jj = |η1 − η2|.
    """
    return dispatch(_event_variables, events, label="event-variables", jets=jets,
                    n_dphi=n_dphi)


def _event_variables(events: ak.Array, *, jets: str, n_dphi: int) -> ak.Array:
    first_present(events, (jets,), where="events", needed_for="the dijet event variables")
    met = events[_met_name(events)]
    collection = events[jets]
    fields = ("pt", "eta", "phi", "mass")
    j = ak.zip({f: collection[f] for f in fields})
    n_jets = ak.num(j, axis=1)
    padded = ak.pad_none(j, 2, axis=1)
    j1, j2 = padded[:, 0], padded[:, 1]
    has2 = n_jets >= 2

    def fill(values: Any) -> Any:
        return ak.values_astype(ak.where(has2, ak.fill_none(values, 0.0), 0.0), np.float32)

    mjj = dijet_mass(j1, j2)
    mt = _transverse_mass(j1, j2, met)
    met_pt = _f64(met["pt"])
    mt_filled = ak.fill_none(mt, 0.0)
    met_over_mt = ak.where(mt_filled > 0, met_pt / ak.where(mt_filled > 0, mt_filled, 1.0), 0.0)
    dphi_jets = np.abs(delta_phi(_f64(collection["phi"][:, :n_dphi]), _f64(met["phi"])))
    dphi_min = ak.fill_none(ak.min(dphi_jets, axis=1), np.pi)
    return ak.zip(
        {
            "n_jets": ak.values_astype(n_jets, np.int32),
            "mjj": fill(mjj),
            "deta_jj": fill(np.abs(_f64(j1["eta"]) - _f64(j2["eta"]))),
            "dphi_jj": fill(np.abs(delta_phi(_f64(j1["phi"]), _f64(j2["phi"])))),
            "mt": fill(mt),
            "met": ak.values_astype(met_pt, np.float32),
            "met_over_mt": fill(met_over_mt),
            "dphi_min": ak.values_astype(dphi_min, np.float32),
        }
    )


def vbs_variables(
    events: ak.Array,
    *,
    jets: str = "Jet",
    leptons: tuple[str, ...] = ("Electron", "Muon"),
) -> ak.Array:
    """Same-sign WW + 2 jets (VBS) event variables from the two leading jets and leptons.

    Zeppenfeld variable of lepton ℓ: z*_ℓ = |η_ℓ − (η_j1 + η_j2)/2| / |Δη_jj|
    (Rainwater, Szalapski, Zeppenfeld, Phys. Rev. D 54 (1996) 6680, hep-ph/9605444; the form
    of CMS, Phys. Lett. B 809 (2020) 135710, arXiv:2005.01173).

    Args:
        events: NanoEvents with ``events[jets]``, the lepton collections and MET.
        jets: jet collection (AK4 ``Jet`` for VBS tagging jets).
        leptons: lepton collections merged and p_T-ordered (those absent are skipped, at
            least one must exist).

    Returns:
        ``events * {n_jets, n_leptons, lep1_pt, lep1_eta, lep2_pt, lep2_eta, zep1, zep2,
        mjj, deta_jj, dphi_jj, mll, met, jet1_pt, jet2_pt}`` float32 (counts int32). Defined
        value 0 for every variable whose objects are missing (fewer than two jets or
        leptons), and z* = 0 where Δη_jj = 0.
    """
    return dispatch(_vbs_variables, events, label="vbs-variables", jets=jets,
                    leptons=tuple(leptons))


def _vbs_variables(events: ak.Array, *, jets: str, leptons: tuple[str, ...]) -> ak.Array:
    first_present(events, (jets,), where="events", needed_for="the VBS variables")
    present = [name for name in leptons if name in events.fields]
    if not present:
        first_present(events, leptons, where="events", needed_for="the VBS variables")
    met = events[_met_name(events)]
    fields = ("pt", "eta", "phi", "mass")
    j = ak.zip({f: events[jets][f] for f in fields})
    lep = ak.concatenate([ak.zip({f: events[name][f] for f in fields}) for name in present],
                         axis=1)
    lep = lep[ak.argsort(lep["pt"], axis=1, ascending=False)]
    n_jets, n_lep = ak.num(j, axis=1), ak.num(lep, axis=1)
    jp, lp = ak.pad_none(j, 2, axis=1), ak.pad_none(lep, 2, axis=1)
    j1, j2, l1, l2 = jp[:, 0], jp[:, 1], lp[:, 0], lp[:, 1]
    has_jj, has_ll = n_jets >= 2, n_lep >= 2

    def out(values: Any, ok: Any = None) -> Any:
        values = ak.fill_none(values, 0.0)
        if ok is not None:
            values = ak.where(ok, values, 0.0)
        return ak.values_astype(values, np.float32)

    eta1, eta2 = _f64(j1["eta"]), _f64(j2["eta"])
    deta = np.abs(eta1 - eta2)
    centre = 0.5 * (eta1 + eta2)
    safe = ak.where(deta > 0, deta, 1.0)

    def zeppenfeld(lepton: Any) -> Any:
        return ak.where(deta > 0, np.abs(_f64(lepton["eta"]) - centre) / safe, 0.0)

    return ak.zip(
        {
            "n_jets": ak.values_astype(n_jets, np.int32),
            "n_leptons": ak.values_astype(n_lep, np.int32),
            "lep1_pt": out(l1["pt"]),
            "lep1_eta": out(l1["eta"]),
            "lep2_pt": out(l2["pt"]),
            "lep2_eta": out(l2["eta"]),
            "zep1": out(zeppenfeld(l1), has_jj),
            "zep2": out(zeppenfeld(l2), has_jj),
            "mjj": out(dijet_mass(j1, j2), has_jj),
            "deta_jj": out(deta, has_jj),
            "dphi_jj": out(np.abs(delta_phi(_f64(j1["phi"]), _f64(j2["phi"]))), has_jj),
            "mll": out(dijet_mass(l1, l2), has_ll),
            "met": ak.values_astype(met["pt"], np.float32),
            "jet1_pt": out(j1["pt"]),
            "jet2_pt": out(j2["pt"]),
        }
    )


#: Default cuts of :func:`vbs_selection` (and of the ``vbs`` processor), in the spirit of the CMS
#: same-sign WW measurement (CMS, Phys. Lett. B 809 (2020) 135710, arXiv:2005.01173).
VBS_CUTS: dict[str, Any] = {
    "min_lep1_pt": 25.0, "min_lep2_pt": 20.0, "max_lep_eta": 2.5, "same_sign": True,
    "min_jet_pt": 50.0, "max_jet_eta": 4.7, "min_mjj": 500.0, "min_deta_jj": 2.5,
}


def vbs_selection_names(**cuts: Any) -> list[str]:
    """Cutflow labels of the steps of :func:`vbs_selection` with ``cuts`` (defaults
    :data:`VBS_CUTS`)."""
    c = {**VBS_CUTS, **cuts}
    names = [">=2 leptons", (f"lepton pt>{c['min_lep1_pt']:g},{c['min_lep2_pt']:g} "
                             f"|eta|<{c['max_lep_eta']:g}")]
    if c["same_sign"]:
        names.append("same-sign leptons")
    return [*names, ">=2 jets", f"jet pt>{c['min_jet_pt']:g} |eta|<{c['max_jet_eta']:g}",
            f"mjj>{c['min_mjj']:g}", f"|deta_jj|>{c['min_deta_jj']:g}"]


def vbs_selection(events: ak.Array, *, jets: str = "Jet",
                  leptons: tuple[str, ...] = ("Electron", "Muon"), **cuts: Any) -> ak.Array:
    """The same-sign dilepton + two-jet preselection, step by step.

    Two leptons (the leading two of the merged, p_T-ordered collections, as in
    :func:`vbs_variables`) above p_T thresholds and within |η|, of the same charge, two jets
    above p_T within |η| with m_jj and |Δη_jj| above thresholds. Pure awkward, so it runs on
    eager events, on each dask-awkward partition and on typetracers.

    Args:
        events: NanoEvents with the jets, the lepton collections (``charge`` too) and MET.
        jets, leptons: as in :func:`vbs_variables`.
        cuts: overrides of :data:`VBS_CUTS` (unknown keys are an error).

    Returns:
        ``events * {step0, step1, ...}`` booleans, one per label of
        :func:`vbs_selection_names` (each step alone; the selection is their AND).
    """
    unknown = sorted(set(cuts) - set(VBS_CUTS))
    if unknown:
        msg = f"vbs_selection: unknown cuts {unknown}; expected some of {sorted(VBS_CUTS)}"
        raise WrongTypeError(msg)
    c = {**VBS_CUTS, **cuts}
    v = vbs_variables(events, jets=jets, leptons=leptons)

    def f64(field: str) -> Any:
        return ak.values_astype(v[field], np.float64)

    present = [n for n in leptons if n in events.fields]
    pt = ak.concatenate([events[n].pt for n in present], axis=1)
    charge = ak.concatenate([events[n].charge for n in present], axis=1)
    charge = charge[ak.argsort(pt, axis=1, ascending=False)]
    charges = ak.fill_none(ak.pad_none(charge, 2, axis=1), 0)
    jet_eta = ak.fill_none(ak.pad_none(events[jets].eta, 2, axis=1), np.inf)
    masks = [
        v.n_leptons >= 2,
        (f64("lep1_pt") > c["min_lep1_pt"]) & (f64("lep2_pt") > c["min_lep2_pt"])
        & (abs(f64("lep1_eta")) < c["max_lep_eta"]) & (abs(f64("lep2_eta")) < c["max_lep_eta"]),
    ]
    if c["same_sign"]:
        masks.append(charges[:, 0] * charges[:, 1] > 0)
    masks += [
        v.n_jets >= 2,
        (f64("jet1_pt") > c["min_jet_pt"]) & (f64("jet2_pt") > c["min_jet_pt"])
        & (abs(jet_eta[:, 0]) < c["max_jet_eta"]) & (abs(jet_eta[:, 1]) < c["max_jet_eta"]),
        f64("mjj") > c["min_mjj"],
        f64("deta_jj") > c["min_deta_jj"],
    ]
    return ak.zip({f"step{k}": m for k, m in enumerate(masks)})
