"""Jet clustering and substructure with FastJet (and fastjet-contrib) on awkward arrays.

- Jets: anti-kT (R = 0.8 for ``FatJet``, 0.4 for ``Jet``), E-scheme, over the PF candidates;
  sorted by decreasing pT, with the local PF-candidate index of each constituent.
- Soft-drop mass: the jet's constituents reclustered with Cambridge/Aachen (one jet, as
  fastjet-contrib's SoftDrop does internally) and groomed with β = 0, z_cut = 0.1, R0 = 0.8
  (the CMS ``msoftdrop`` definition).
- N-subjettiness τ1..τ4: fastjet-contrib ``Nsubjettiness`` with one-pass kT axes and the
  normalised measure, β = 1, R0 = 0.8 (the CMS NanoAOD definition).

References:
    M. Cacciari, G. P. Salam, G. Soyez, "The anti-kt jet clustering algorithm", JHEP 04 (2008)
    063, arXiv:0802.1189.
    A. J. Larkoski, S. Marzani, G. Soyez, J. Thaler, "Soft Drop", JHEP 05 (2014) 146,
    arXiv:1402.2657.
    J. Thaler, K. Van Tilburg, "Identifying boosted objects with N-subjettiness", JHEP 03
    (2011) 015, arXiv:1011.2268.
"""

from __future__ import annotations

import os
import sys

import awkward as ak
import numpy as np

from coffea_ad._optional import require

__all__ = ["cluster", "gather", "substructure"]

_BANNER_DONE = False


def _fastjet():
    """Import fastjet once, swallowing the C++ banner it prints on first clustering."""
    global _BANNER_DONE
    fastjet = require("fastjet", purpose="jet clustering in coffea_ad.samples")
    if not _BANNER_DONE:
        # the banner is written by C++ to fd 1: silence the fd, not only sys.stdout
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                fastjet._swig.ClusterSequence.print_banner()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_DONE = True
    return fastjet


def _p4(px: ak.Array, py: ak.Array, pz: ak.Array, e: ak.Array) -> ak.Array:
    # fastjet's awkward interface wants records with px, py, pz, E (the Momentum4D names)
    return ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D")


def _kinematics(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass}


def cluster(
    cands: ak.Array, *, radius: float, min_pt: float
) -> tuple[ak.Array, ak.Array]:
    """Anti-kT jets of each event, sorted by decreasing pT.

    Args:
        cands: ``events * var * {px, py, pz, E}`` (GeV).
        radius: jet radius R.
        min_pt: minimum jet pT (GeV).

    Returns:
        ``(jets, index)``: ``events * var * {pt, eta, phi, mass, px, py, pz, E}`` (float64) and
        ``events * var(jets) * var * int64``, the local index into ``cands`` of each
        constituent, in the same jet order.
    """
    fastjet = _fastjet()
    seq = fastjet.ClusterSequence(
        _p4(cands.px, cands.py, cands.pz, cands.E), fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    )
    jets = seq.inclusive_jets(min_pt=min_pt)
    index = seq.constituent_index(min_pt=min_pt)
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False)
    jets, index = jets[order], ak.values_astype(index[order], np.int64)
    flat = {k: np.asarray(ak.flatten(jets[k]), dtype=np.float64) for k in ("px", "py", "pz", "E")}
    cols = {**_kinematics(flat["px"], flat["py"], flat["pz"], flat["E"]), **flat}
    return ak.unflatten(ak.zip(cols, depth_limit=1), ak.num(jets)), index


def gather(items: ak.Array, index: ak.Array) -> ak.Array:
    """``items[index]`` for a doubly jagged local index (awkward cannot slice that directly).

    Args:
        items: ``events * var * X``.
        index: ``events * var * var * int``, local indices into each event's ``items``.

    Returns:
        ``events * var * var * X``.
    """
    starts = np.cumsum(np.asarray(ak.num(items, axis=1))) - np.asarray(ak.num(items, axis=1))
    glob = index + starts  # broadcasts the per-event offset over jets and constituents
    flat = ak.flatten(items, axis=1)[np.asarray(ak.flatten(glob, axis=None))]
    inner = ak.unflatten(flat, np.asarray(ak.flatten(ak.num(index, axis=2))))
    return ak.unflatten(inner, np.asarray(ak.num(index, axis=1)))


def substructure(constituents: ak.Array, *, r0: float = 0.8) -> dict[str, np.ndarray]:
    """Soft-drop mass and N-subjettiness τ1..τ4 of every jet (see the module docstring).

    Args:
        constituents: ``events * var(jets) * var * {px, py, pz, E}``.
        r0: jet radius used by soft drop and the N-subjettiness normalisation.

    Returns:
        Flat float32 columns (one entry per jet, event-major order): ``msoftdrop``, ``tau1``,
        ``tau2``, ``tau3``, ``tau4``.
    """
    fastjet = _fastjet()
    n_jets = int(ak.sum(ak.num(constituents, axis=1)))
    if n_jets == 0:
        empty = np.zeros(0, dtype=np.float32)
        return {k: empty for k in ("msoftdrop", "tau1", "tau2", "tau3", "tau4")}
    # one "event" per jet: the jet's constituents, reclustered with C/A and an R large enough
    # that they end in a single jet (what fastjet-contrib's SoftDrop reclustering does)
    per_jet = ak.flatten(constituents, axis=1)
    seq = fastjet.ClusterSequence(
        _p4(per_jet.px, per_jet.py, per_jet.pz, per_jet.E),
        fastjet.JetDefinition(fastjet.cambridge_algorithm, 1000.0),
    )
    groomed = seq.exclusive_jets_softdrop_grooming(
        njets=1, beta=0.0, symmetry_cut=0.1, symmetry_measure="scalar_z", R0=r0
    )
    taus = seq.njettiness(
        measure_definition="NormalizedMeasure",
        axes_definition="OnePass_KT_Axes",
        njets=[1, 2, 3, 4],
        beta=1.0,
        R0=r0,
    )
    taus = np.asarray(ak.to_numpy(taus), dtype=np.float32).reshape(n_jets, 4)
    out = {"msoftdrop": np.asarray(groomed.msoftdrop, dtype=np.float32)}
    out.update({f"tau{i + 1}": np.ascontiguousarray(taus[:, i]) for i in range(4)})
    return out
