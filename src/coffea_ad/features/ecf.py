"""Energy correlation functions e2, e3, C2, D2 and EFP1: numba kernels over flat arrays.

Definitions (Larkoski, Salam, Thaler, JHEP 06 (2013) 108, arXiv:1305.0007, hadron-collider
``pt_R`` measure, as in fastjet-contrib ``EnergyCorrelator``):

    z_i = p_T,i / Σ_k p_T,k,   R_ij² = (y_i − y_j)² + Δφ_ij²   (rapidity y, Δφ wrapped),
    e2^(β) = Σ_{i<j} z_i z_j R_ij^β,
    e3^(β) = Σ_{i<j<k} z_i z_j z_k (R_ij R_ik R_jk)^β,
    C2^(β) = e3^(β) / (e2^(β))²   (arXiv:1305.0007, = EnergyCorrelatorC2 / DoubleRatio N=2),
    D2^(β) = e3^(β) / (e2^(β))³   (Larkoski, Moult, Neill, JHEP 12 (2014) 009, arXiv:1409.6298;
                                  = fastjet-contrib EnergyCorrelatorD2).

z_i is normalised by the scalar sum of the constituents' p_T (EnergyCorrelator's ECF(1)), so
C2 and D2 here equal the ratios of unnormalised EnergyCorrelator values exactly.

Cost and the choice made: e3 is a sum over M(M−1)(M−2)/6 triples. The kernel precomputes the
M×M matrix P_ij = R_ij^β once per jet and β and uses the exact identity
e3 = ⅙ Σ_ij z_i z_j P_ij (P W P)_ij, W = diag(z) (P_ii = 0, so repeated indices drop out and
each triplet is counted 3! times; all terms ≥ 0, no cancellation), whose O(M³) part is one
BLAS matrix product. Measured against the direct i<j<k loops in numba it was 2x faster at
M = 8 and 4x at M = 48-64, so it is used for every jet. It stays exact (no top-N truncation
by default, no approximation): ``benchmarks/bench_features.py`` prints the time per jet
against M (≈130 µs per jet for all three β at M = 50, ≈600 µs at M = 100, on the shared
2-core CI machine under load), so exactness costs little at the 20-100 constituents of AK8
jets, and the run is 7-8x faster than fastjet-contrib's EnergyCorrelator for C2+D2.
``max_constituents`` offers the top-N-by-p_T truncation for very wide jets (then z_i is
normalised over the kept constituents, so C2/D2 are those of the truncated jet). The β = 2
energy-flow-moment identity would make e3 O(M) but only for β = 2, and the SVJ studies use
β = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import awkward as ak
import numba
import numpy as np

from coffea_ad.features._columnar import (
    dispatch,
    flatten_jets,
    is_typetracer,
    rapidity,
    touch_and_template,
)

__all__ = ["BETAS", "efp1", "energy_correlators"]

#: Angular exponents β for which the registry offers e2, e3, C2, D2.
BETAS: tuple[float, ...] = (0.5, 1.0, 2.0)


def beta_label(beta: float) -> str:
    """``0.5 -> "0.5"``, ``1.0 -> "1"``, ``2.0 -> "2"`` (the suffix of ``e2_b1`` ...)."""
    return f"{beta:g}"


@numba.njit(cache=True)
def _ecf_dense(pair, z):  # pragma: no cover - numba
    """e2, e3 from the full symmetric sums: e2 = ½ zᵀPz, e3 = ⅙ Σ_ab z_a z_b P_ab (P W P)_ab.

    W = diag(z); the diagonal of P is 0, so terms with repeated indices vanish and each
    unordered pair (triplet) is counted 2 (6) times. All terms are ≥ 0: no cancellation.
    """
    p = np.ascontiguousarray(pair)
    pwp = np.dot(p * z[np.newaxis, :], p)
    e2 = 0.0
    e3 = 0.0
    m = z.shape[0]
    for a in range(m):
        s2 = 0.0
        s3 = 0.0
        for b in range(m):
            w = z[b] * p[a, b]
            s2 += w
            s3 += w * pwp[a, b]
        e2 += z[a] * s2
        e3 += z[a] * s3
    return e2 / 2.0, e3 / 6.0


@numba.njit(cache=True)
def _ecf_kernel(offsets, pt, y, phi, betas, max_n, out_e2, out_e3):  # pragma: no cover - numba
    n_jets = offsets.shape[0] - 1
    nb = betas.shape[0]
    widest = 0
    for jet in range(n_jets):
        widest = max(widest, offsets[jet + 1] - offsets[jet])
    if max_n > 0:
        widest = min(widest, max_n)
    pair = np.empty((nb, widest, widest))
    z = np.empty(widest)
    yy = np.empty(widest)
    ph = np.empty(widest)
    for jet in range(n_jets):
        start = offsets[jet]
        stop = offsets[jet + 1]
        # constituents without a defined energy flow (p_T ≤ 0, NaN/inf) are left out
        valid = np.empty(stop - start, dtype=np.int64)
        m = 0
        for k in range(start, stop):
            if pt[k] > 0.0 and np.isfinite(pt[k]) and np.isfinite(y[k]) and np.isfinite(phi[k]):
                valid[m] = k
                m += 1
        valid = valid[:m]
        if max_n > 0 and m > max_n:
            valid = valid[np.argsort(-pt[valid], kind="mergesort")[:max_n]]
            m = max_n
        total = 0.0
        for a in range(m):
            k = valid[a]
            z[a] = pt[k]
            yy[a] = y[k]
            ph[a] = phi[k]
            total += pt[k]
        for ib in range(nb):
            out_e2[jet, ib] = 0.0
            out_e3[jet, ib] = 0.0
        if m < 2 or total <= 0.0:
            continue
        for a in range(m):
            z[a] /= total
        for a in range(m):
            for ib in range(nb):
                pair[ib, a, a] = 0.0  # enters the matrix product
            for b in range(a + 1, m):
                dphi = abs(ph[a] - ph[b]) % (2.0 * np.pi)
                if dphi > np.pi:
                    dphi = 2.0 * np.pi - dphi
                dy = yy[a] - yy[b]
                r2 = dy * dy + dphi * dphi
                for ib in range(nb):
                    beta = betas[ib]
                    if beta == 2.0:
                        v = r2
                    elif beta == 1.0:
                        v = np.sqrt(r2)
                    elif beta == 0.5:
                        v = np.sqrt(np.sqrt(r2))
                    else:
                        v = r2 ** (0.5 * beta)
                    pair[ib, a, b] = v
                    pair[ib, b, a] = v
        for ib in range(nb):
            e2, e3 = _ecf_dense(pair[ib, :m, :m], z[:m])
            out_e2[jet, ib] = e2
            out_e3[jet, ib] = e3


def _ecf_arrays(constituents: ak.Array, betas: Sequence[float],
                max_constituents: int | None) -> tuple[np.ndarray, np.ndarray, ak.Array]:
    """Flat ``[n_jets, n_beta]`` e2, e3 (float64) and the ``events`` counts to unflatten."""
    offsets, cols, jets_per_event = flatten_jets(constituents, ("pt", "eta", "phi", "mass"))
    with np.errstate(invalid="ignore", divide="ignore"):  # bad constituents: skipped in kernel
        y = rapidity(cols["pt"], cols["eta"], cols["mass"])
    beta_array = np.asarray(betas, dtype=np.float64)
    n_jets = len(offsets) - 1
    e2 = np.zeros((n_jets, len(beta_array)))
    e3 = np.zeros((n_jets, len(beta_array)))
    _ecf_kernel(offsets, cols["pt"], y, cols["phi"], beta_array, int(max_constituents or 0),
                e2, e3)
    return e2, e3, jets_per_event


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)  # e2 = 0 (≤ 1 constituent, collinear) -> 0
    return out


def energy_correlators(
    constituents: ak.Array,
    *,
    betas: Sequence[float] = BETAS,
    max_constituents: int | None = None,
) -> ak.Array:
    """e2, e3, C2, D2 for each β, in one pass over each jet's constituents.

    Args:
        constituents: ``events * jets * var * {pt, eta, phi[, mass]}`` (mass enters the
            rapidity; taken as 0 if absent).
        betas: angular exponents β.
        max_constituents: keep only the N highest-p_T constituents (None: all, exact).

    Returns:
        ``events * jets * {e2_b<β>, e3_b<β>, c2_b<β>, d2_b<β>, ...}`` float32 (computed in
        float64; field suffix as ``f"{β:g}"``, e.g. ``e2_b0.5``, ``c2_b1``). Defined values:
        e2 = 0 for fewer than 2 valid constituents, e3 = 0 for fewer than 3, C2 = D2 = 0 where
        e2 = 0 (also all-collinear jets). Constituents with p_T ≤ 0 or non-finite kinematics
        are ignored.
    """
    return dispatch(_energy_correlators, constituents, label="energy-correlators",
                    betas=tuple(float(b) for b in betas), max_constituents=max_constituents)


def _energy_correlators(constituents: ak.Array, *, betas: tuple[float, ...],
                        max_constituents: int | None) -> ak.Array:
    names = [f"{kind}_b{beta_label(b)}" for b in betas for kind in ("e2", "e3", "c2", "d2")]
    if is_typetracer(constituents):
        # dask-awkward's projection pass: say which branches the kernel reads, return the type
        template = touch_and_template(constituents, ("pt", "eta", "phi", "mass"))
        return ak.zip(dict.fromkeys(names, template))
    e2, e3, jets_per_event = _ecf_arrays(constituents, betas, max_constituents)
    columns: dict[str, np.ndarray] = {}
    for ib, beta in enumerate(betas):
        label = beta_label(beta)
        columns[f"e2_b{label}"] = e2[:, ib]
        columns[f"e3_b{label}"] = e3[:, ib]
        columns[f"c2_b{label}"] = _ratio(e3[:, ib], e2[:, ib] ** 2)
        columns[f"d2_b{label}"] = _ratio(e3[:, ib], e2[:, ib] ** 3)
    return ak.unflatten(
        ak.zip({name: columns[name].astype(np.float32) for name in names}), jets_per_event
    )


def efp1(constituents: ak.Array) -> ak.Array:
    """EFP1: the one-edge energy flow polynomial Σ_{i,j} z_i z_j θ_ij (β = 1).

    Reference: Komiske, Metodiev, Thaler, JHEP 04 (2018) 013, arXiv:1712.07124, hadronic
    measure (z_i = p_T,i / Σ p_T, θ_ij = sqrt(Δy² + Δφ²), κ = 1, β = 1, the ``energyflow``
    defaults). The sum runs over ordered pairs, so EFP1 = 2 e2^(β=1) exactly; it is computed
    that way.

    Args:
        constituents: ``events * jets * var * {pt, eta, phi[, mass]}``.

    Returns:
        ``events * jets * float32``; 0 for fewer than 2 valid constituents.
    """
    return dispatch(_efp1, constituents, label="efp1")


def _efp1(constituents: ak.Array) -> ak.Array:
    e2 = _energy_correlators(constituents, betas=(1.0,), max_constituents=None)["e2_b1"]
    return ak.values_astype(2.0 * ak.values_astype(e2, np.float64), np.float32)
