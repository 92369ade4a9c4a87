"""Jet energy scale and resolution variations as re-ordered jet collections.

Each variation is a full jet collection: the nominal jets with their four-momenta scaled
(η, φ and the substructure branches unchanged), re-ordered by the varied p_T, so a processor
recomputes its selection, m_T and scores from it exactly as for the nominal jets.

Two sources:

- **TreeMaker** (:func:`treemaker_jet_variations`): the ntuple stores, for each variation
  ``V`` in ``JECup, JECdown, JERup, JERdown``, the order of the varied collection as
  ``{jets}{V}_origIndex`` (indices into the common original collection, the same index space
  as the nominal ``{jets}_origIndex``) and for JEC its re-smeared ``{jets}{V}_jerFactor``.
  The varied four-momentum of a jet is its nominal one times
  ``(1 ± jecUnc) * jerFactor_V / jerFactor`` (JEC) or ``jerFactorUp|Down / jerFactor``
  (JER). Jets the variation lists but the nominal collection lacks (they crossed the p_T
  threshold) have no stored kinematics and are left out; nominal jets it does not list are
  dropped from it.
- **correctionlib JSON** for NanoAOD (:func:`correctionlib_jet_variations`): JES up/down from
  an uncertainty correction (``pt × (1 ± unc(η, p_T))``) and JER up/down by the hybrid
  method: jets matched to a generator jet are scaled to ``gen + SF × (reco − gen)`` with the
  scale factor's ``up``/``down`` values relative to the nominal one; unmatched jets keep
  their p_T (no random smearing, so variations are reproducible). The CMS file
  ``jet_jerc_Summer22_V3.json.gz`` has AK4PFPuppi corrections only: using them for AK8 jets
  (PUPPI too) is a choice, documented in ``docs/cms-inputs.md``.
"""

from __future__ import annotations

import os
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import MissingBranchError

__all__ = [
    "TREEMAKER_VARIATIONS",
    "correctionlib_jet_variations",
    "treemaker_jet_variations",
    "with_mass",
]

#: TreeMaker variation names -> systematic-axis labels.
TREEMAKER_VARIATIONS: dict[str, str] = {"JECup": "jesUp", "JECdown": "jesDown",
                                        "JERup": "jerUp", "JERdown": "jerDown"}


def with_mass(jets: ak.Array) -> ak.Array:
    """``jets`` with a ``mass`` field: TreeMaker's (p_T, η, φ, E) vectors have the mass only
    as a property of coffea's behaviour, which code reading fields does not see."""
    if "mass" in jets.fields:
        return jets
    # a plain record: coffea's PtEtaPhiE behaviour refuses a record with both energy and mass
    fields = {f: jets[f] for f in jets.fields}
    fields["mass"] = jets.mass
    return ak.zip(fields, depth_limit=2)


def _reordered(nominal: ak.Array, factor: ak.Array, index: ak.Array | None = None) -> ak.Array:
    """``nominal`` with pt (and energy/mass where stored) times ``factor`` and the field
    ``nominalIndex`` (position of each jet in the nominal collection: ``index``, default the
    jets' own positions), sorted by decreasing varied p_T."""
    # with_field keeps the record name, so coffea's vector behaviour (mass from p_T, η, φ, E)
    # follows the scaled momenta
    varied = ak.with_field(nominal, nominal["pt"] * factor, "pt")
    for name in ("energy", "mass"):
        if name in nominal.fields:
            varied = ak.with_field(varied, nominal[name] * factor, name)
    if index is None:
        index = ak.local_index(nominal["pt"], axis=1)
    varied = ak.with_field(varied, index, "nominalIndex")
    return varied[ak.argsort(varied["pt"], axis=1, ascending=False, stable=True)]


def treemaker_jet_variations(events: Any, *, jets: str = "JetsAK8") -> dict[str, ak.Array]:
    """The JEC/JER-varied jet collections a TreeMaker ntuple describes.

    Args:
        events: TreeMakerSchema NanoEvents (eager or virtual).
        jets: the nominal collection (``JetsAK8`` or ``Jets``).

    Returns:
        ``{label: events * jets}`` for each of ``jesUp, jesDown, jerUp, jerDown`` whose
        ``{jets}{V}_origIndex`` branch the events carry (see the module docstring).

    Raises:
        MissingBranchError: the nominal jets lack ``origIndex``, ``jecUnc`` or ``jerFactor*``
            that a present variation needs.
    """
    nominal = with_mass(events[jets])
    out: dict[str, ak.Array] = {}
    for variation, label in TREEMAKER_VARIATIONS.items():
        name = f"{jets}{variation}"
        if name not in events.fields:
            continue
        needed = ["origIndex", "jerFactor"] + (
            ["jecUnc"] if variation.startswith("JEC") else [f"jerFactor{variation[3:].title()}"])
        for field in needed:
            if field not in nominal.fields:
                raise MissingBranchError(f"{jets}_{field}", nominal.fields, where="events",
                                         needed_for=f"the {variation} jet variation")
        var = events[name]
        # position of each varied jet in the nominal collection (small: a few jets per event)
        same = var["origIndex"][:, :, np.newaxis] == nominal["origIndex"][:, np.newaxis, :]
        found = ak.any(same, axis=2)
        pos = ak.argmax(same, axis=2, keepdims=False)
        pos = ak.fill_none(pos, 0)[found]
        matched = nominal[pos]
        jer = ak.values_astype(matched["jerFactor"], np.float64)
        if variation.startswith("JEC"):
            sign = 1.0 if variation.endswith("up") else -1.0
            jer_var = ak.values_astype(var["jerFactor"][found], np.float64)
            factor = (1.0 + sign * ak.values_astype(matched["jecUnc"], np.float64)) * (
                jer_var / ak.where(jer > 0, jer, 1.0))
        else:
            shifted = ak.values_astype(matched[f"jerFactor{variation[3:].title()}"], np.float64)
            factor = shifted / ak.where(jer > 0, jer, 1.0)
        out[label] = _reordered(matched, factor, pos)
    return out


def correctionlib_jet_variations(
    jets: ak.Array,
    source: str | os.PathLike[str] | Any,
    *,
    uncertainty: str = "Summer22_22Sep2023_V3_MC_Total_AK4PFPuppi",
    jer_scale_factor: str | None = "Summer22_22Sep2023_JRV1_MC_ScaleFactor_AK4PFPuppi",
    gen_jets: ak.Array | None = None,
    max_dr: float = 0.4,
) -> dict[str, ak.Array]:
    """JES and JER up/down variations of NanoAOD jets from a correctionlib JSON.

    Args:
        jets: ``events * jets`` with ``pt, eta, phi, mass`` (and ``genJetAK8Idx`` or
            ``genJetIdx`` for the JER matching when ``gen_jets`` is given).
        source: correctionlib JSON path (``.json`` or ``.json.gz``) or a loaded
            ``correctionlib.CorrectionSet``.
        uncertainty: name of the JES uncertainty correction (inputs ``JetEta, JetPt``).
        jer_scale_factor: name of the JER scale factor (inputs ``JetEta, JetPt,
            systematic``), or ``None`` for JES only.
        gen_jets: ``events * genjets`` (``pt, eta, phi``) for the JER hybrid method.
        max_dr: gen-matching cone (ΔR) for JER; half the jet radius is customary (0.4 for
            AK8).

    Returns:
        ``{"jesUp", "jesDown"[, "jerUp", "jerDown"]: events * jets}``, each re-ordered by
        its p_T.
    """
    import correctionlib

    cset = (correctionlib.CorrectionSet.from_file(str(source))
            if isinstance(source, (str, os.PathLike)) else source)
    counts = ak.num(jets, axis=1)
    eta = ak.to_numpy(ak.flatten(jets["eta"])).astype(np.float64)
    pt = ak.to_numpy(ak.flatten(jets["pt"])).astype(np.float64)
    unc = np.asarray(cset[uncertainty].evaluate(eta, pt), dtype=np.float64)
    out = {"jesUp": _reordered(jets, ak.unflatten(1.0 + unc, counts)),
           "jesDown": _reordered(jets, ak.unflatten(1.0 - unc, counts))}
    if jer_scale_factor is None or gen_jets is None:
        return out
    sf = {s: np.asarray(cset[jer_scale_factor].evaluate(eta, pt, s), dtype=np.float64)
          for s in ("nom", "up", "down")}
    gen_pt = _matched_gen_pt(jets, gen_jets, max_dr=max_dr)
    matched = np.isfinite(gen_pt)
    for label, key in (("jerUp", "up"), ("jerDown", "down")):
        # NanoAOD p_T already carries the nominal smearing, pt - gen = SF_nom (raw - gen):
        # the varied p_T is gen + SF_v (raw - gen)
        varied = np.where(matched, gen_pt + sf[key] / sf["nom"] * (pt - gen_pt), pt)
        factor = np.where(pt > 0, varied / np.where(pt > 0, pt, 1.0), 1.0)
        out[label] = _reordered(jets, ak.unflatten(np.maximum(factor, 0.0), counts))
    return out


def _matched_gen_pt(jets: ak.Array, gen_jets: ak.Array, *, max_dr: float) -> np.ndarray:
    """Flat p_T of the closest generator jet within ``max_dr`` of each jet (NaN if none)."""
    pairs = ak.cartesian({"j": jets[["eta", "phi"]], "g": gen_jets[["pt", "eta", "phi"]]},
                         axis=1, nested=True)
    dphi = (pairs["j"]["phi"] - pairs["g"]["phi"] + np.pi) % (2 * np.pi) - np.pi
    dr = np.hypot(pairs["j"]["eta"] - pairs["g"]["eta"], dphi)
    best = ak.argmin(dr, axis=2, keepdims=True)
    best_dr = ak.fill_none(ak.flatten(dr[best], axis=2), np.inf)
    best_pt = ak.fill_none(ak.flatten(pairs["g"]["pt"][best], axis=2), np.nan)
    flat_dr = ak.to_numpy(ak.flatten(best_dr)).astype(np.float64)
    flat_pt = ak.to_numpy(ak.flatten(best_pt)).astype(np.float64)
    return np.where(flat_dr < max_dr, flat_pt, np.nan)
