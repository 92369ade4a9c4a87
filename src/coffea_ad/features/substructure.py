"""Jet substructure from constituents: p_T^D, η–φ axes, girth, LHA (pure awkward reductions).

Inputs are ``events * jets * constituents`` records from
:func:`~coffea_ad.features.constituents.jet_constituents` (``pt``, ``eta``, ``phi``) and, where
an axis is needed, the ``events * jets`` jet records (``eta``, ``phi``). Outputs are
``events * jets * float32``. Sums run in float64 (the branches are float32).

Constituents that carry no defined energy flow — p_T ≤ 0 or a non-finite ``pt``/``eta``/``phi``
— are left out of every sum (:func:`valid_constituents`); each observable then has a defined
value for jets with too few constituents, stated in its docstring, so no NaN or inf comes out.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from coffea_ad.features._columnar import delta_phi, dispatch

__all__ = ["axes", "girth", "lha", "ptd", "valid_constituents"]


def valid_constituents(constituents: ak.Array, *, with_mass: bool = False) -> ak.Array:
    """Drop constituents with p_T ≤ 0 or non-finite ``pt``, ``eta``, ``phi`` (or ``mass``).

    Args:
        constituents: ``events * jets * var`` records with at least ``pt``, ``eta``, ``phi``.
        with_mass: also drop those with a non-finite ``mass`` (for observables using the
            rapidity); off by default so that η–φ observables do not read the mass branch.

    Returns:
        The same records with those constituents removed (order kept).
    """
    keep = (
        np.isfinite(constituents["pt"])
        & np.isfinite(constituents["eta"])
        & np.isfinite(constituents["phi"])
        & (constituents["pt"] > 0)
    )
    if with_mass and "mass" in constituents.fields:
        keep = keep & np.isfinite(constituents["mass"])
    return constituents[keep]


def _f64(array: ak.Array) -> ak.Array:
    return ak.values_astype(array, np.float64)


def _f32(array: ak.Array) -> ak.Array:
    return ak.values_astype(array, np.float32)


def ptd(constituents: ak.Array) -> ak.Array:
    """p_T^D = sqrt(Σ p_T,i²) / Σ p_T,i over the jet constituents.

    Reference: CMS quark–gluon likelihood, CMS-PAS-JME-13-002 (CMSSW ``QGTagger`` ``ptD``).
    1 for a one-constituent jet, → 1/sqrt(M) for M equal-p_T constituents.

    Args:
        constituents: ``events * jets * var * {pt, eta, phi}``.

    Returns:
        ``events * jets * float32``; 0 for a jet without (valid) constituents.
    """
    return dispatch(_ptd, constituents, label="ptd")


def _ptd(constituents: ak.Array) -> ak.Array:
    pt = _f64(valid_constituents(constituents)["pt"])
    sum_pt = ak.sum(pt, axis=-1)
    sum_pt2 = ak.sum(pt * pt, axis=-1)
    safe = ak.where(sum_pt > 0, sum_pt, 1.0)  # 0/0 for empty jets -> defined 0
    return _f32(ak.where(sum_pt > 0, np.sqrt(sum_pt2) / safe, 0.0))


def axes(constituents: ak.Array) -> ak.Array:
    """Major and minor axes: square roots of the eigenvalues of the p_T²-weighted η–φ covariance.

    With weights w_i = p_T,i² and Δφ measured from a common reference (so that jets across
    φ = ±π are not torn apart), the matrix is
    ``[[⟨Δη²⟩ − ⟨Δη⟩², −(⟨ΔηΔφ⟩ − ⟨Δη⟩⟨Δφ⟩)], [·, ⟨Δφ²⟩ − ⟨Δφ⟩²]]`` with ⟨x⟩ = Σ w_i x_i / Σ w_i,
    and axis_major/minor = sqrt(λ_±), λ_± = (a + b)/2 ± sqrt(((a − b)/2)² + c²).
    This is the CMS quark–gluon definition (CMS-PAS-JME-13-002; CMSSW ``QGTagger::calcVariables``
    ``axis1``/``axis2``, and TreeMaker's ``JetsAK8_axismajor``/``axisminor``). Differences from
    CMSSW: all PF constituents enter here (QGTagger applies track-quality and p_T > 1 GeV cuts
    to some of them), and the covariance is computed about the weighted mean in two passes, so
    collinear constituents give exactly 0 instead of a rounding residue.

    Args:
        constituents: ``events * jets * var * {pt, eta, phi}``.

    Returns:
        ``events * jets * {major: float32, minor: float32}``; both 0 for jets with fewer than
        two valid constituents or all constituents at one point in η–φ.
    """
    return dispatch(_axes, constituents, label="axes")


def _axes(constituents: ak.Array) -> ak.Array:
    c = valid_constituents(constituents)
    pt, eta = _f64(c["pt"]), _f64(c["eta"])
    # Δφ to the first constituent: covariance is translation invariant, the wrap is not
    dphi = delta_phi(_f64(c["phi"]), ak.firsts(_f64(c["phi"]), axis=-1)[..., np.newaxis])
    w = pt * pt
    sum_w = ak.sum(w, axis=-1)
    safe = ak.where(sum_w > 0, sum_w, 1.0)
    mean_eta = ak.sum(w * eta, axis=-1) / safe
    mean_phi = ak.sum(w * dphi, axis=-1) / safe
    deta = eta - mean_eta[..., np.newaxis]
    dph = dphi - mean_phi[..., np.newaxis]
    a = ak.sum(w * deta * deta, axis=-1) / safe
    b = ak.sum(w * dph * dph, axis=-1) / safe
    cc = ak.sum(w * deta * dph, axis=-1) / safe
    root = np.sqrt(((a - b) / 2) ** 2 + cc * cc)
    major = np.sqrt(np.maximum((a + b) / 2 + root, 0.0))
    minor = np.sqrt(np.maximum((a + b) / 2 - root, 0.0))  # rounding can make λ− ≲ 0
    return ak.zip({"major": _f32(major), "minor": _f32(minor)})


def _delta_r_to_axis(constituents: ak.Array, jets: ak.Array) -> ak.Array:
    deta = _f64(constituents["eta"]) - _f64(jets["eta"])[..., np.newaxis]
    dphi = delta_phi(_f64(constituents["phi"]), _f64(jets["phi"])[..., np.newaxis])
    return np.sqrt(deta * deta + dphi * dphi)


def girth(constituents: ak.Array, jets: ak.Array) -> ak.Array:
    """Girth g = Σ p_T,i ΔR_i / Σ p_T,i, ΔR_i in (η, φ) from the jet axis (``jets.eta/phi``).

    Reference: CMS-PAS-JME-13-002 (linear radial moment); the λ¹₁ angularity of
    Larkoski, Thaler, Waalewijn, JHEP 11 (2014) 129, arXiv:1408.3122, times the jet radius.
    Normalised by the constituent scalar sum Σ p_T,i (as the angularities are); TreeMaker's
    ``JetsAK8_girth`` divides by the corrected jet p_T instead, which makes it smaller by the
    jet energy correction factor.

    Args:
        constituents: ``events * jets * var * {pt, eta, phi}``.
        jets: ``events * jets * {eta, phi}`` aligned with ``constituents``.

    Returns:
        ``events * jets * float32``; 0 for a jet without valid constituents or with a
        non-finite axis.
    """
    return dispatch(_girth, constituents, jets, label="girth")


def _girth(constituents: ak.Array, jets: ak.Array) -> ak.Array:
    return _angularity(constituents, jets, exponent=1.0, radius=1.0)


def lha(constituents: ak.Array, jets: ak.Array, *, radius: float = 0.8) -> ak.Array:
    """Les Houches angularity λ¹₀.₅ = Σ z_i (ΔR_i / R)^0.5, z_i = p_T,i / Σ_j p_T,j.

    Reference: Larkoski, Thaler, Waalewijn, JHEP 11 (2014) 129, arXiv:1408.3122 (generalized
    angularities λ^κ_β with κ = 1, β = 0.5); the "LHA" name is from the Les Houches 2015
    report, arXiv:1605.04692. ΔR_i in (η, φ) from the jet axis stored in the file (E-scheme
    for NanoAOD jets; the paper recommends the winner-take-all axis for recoil-free results).

    Args:
        constituents: ``events * jets * var * {pt, eta, phi}``.
        jets: ``events * jets * {eta, phi}`` aligned with ``constituents``.
        radius: jet radius R (0.8 for AK8 ``FatJet``, 0.4 for AK4 ``Jet``).

    Returns:
        ``events * jets * float32``; 0 for a jet without valid constituents.
    """
    return dispatch(_lha, constituents, jets, label="lha", radius=radius)


def _lha(constituents: ak.Array, jets: ak.Array, *, radius: float) -> ak.Array:
    return _angularity(constituents, jets, exponent=0.5, radius=radius)


def _angularity(constituents: ak.Array, jets: ak.Array, *, exponent: float,
                radius: float) -> ak.Array:
    c = valid_constituents(constituents)
    pt = _f64(c["pt"])
    dr = _delta_r_to_axis(c, jets)
    sum_pt = ak.sum(pt, axis=-1)
    safe = ak.where(sum_pt > 0, sum_pt, 1.0)
    value = ak.sum(pt * (dr / radius) ** exponent, axis=-1) / safe
    # a jet with NaN/inf η or φ has no axis to measure from: defined 0, not NaN
    return _f32(ak.where(np.isfinite(value), value, 0.0))
