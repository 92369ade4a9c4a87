"""Quantile thresholds of an anomaly score versus m_jj: decorrelated categories for a bump hunt.

A fixed cut on a score that grows with m_jj sculpts the background m_jj spectrum into a bump.
Cutting instead at the q-quantile of the background score *in each m_jj slice* keeps the
fraction 1 - q of the background everywhere, so every category has the inclusive m_jj shape
(the quantile-regression decorrelation of the CMS model-agnostic dijet search, CMS
Collaboration, arXiv:2412.03747; quantile regression: Koenker and Bassett, Econometrica 46
(1978) 33). Here the conditional quantiles are estimated as weighted empirical quantiles in
m_jj bins, then smoothed by a weighted polynomial fit in m_jj; the result is exported as a
correctionlib JSON (``correctionlib.schemav2``) that any analysis can evaluate.

Category convention: category k (0 ... n_quantiles) holds events that pass exactly k of the
thresholds, so with quantiles (0.5, 0.9, 0.99) category 3 is the 1% most anomalous
background in every m_jj slice and category 0 the least anomalous half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy.special, not scipy.stats: the latter takes seconds to import for two functions
from scipy import special as _special

from coffea_ad.atomic import atomic_write_text
from coffea_ad.errors import StatisticsInputError

__all__ = [
    "CorrectionlibThresholds",
    "QuantileThresholds",
    "category_shape_test",
    "quantile_categories",
    "quantile_thresholds",
    "thresholds_from_correctionlib",
    "thresholds_to_correctionlib",
    "weighted_binned_quantiles",
]

FitKind = Literal["poly", "binned"]


def weighted_binned_quantiles(
    values: ArrayLike,
    bins: ArrayLike,
    probs: ArrayLike,
    *,
    n_bins: int,
    weights: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Weighted empirical quantiles of ``values`` within each bin, all bins at once.

    The empirical CDF puts each event at the middle of its weight step,
    F_i = (sum_{j<i} w_j + w_i / 2) / W, and is interpolated linearly; with equal weights this
    is ``numpy.quantile(..., method="hazen")`` (Hyndman and Fan, Am. Stat. 50 (1996) 361,
    definition 5). One sort of the (bin, value) pairs serves every bin and probability.

    Args:
        values: per-event values, ``n * float``.
        bins: per-event bin index, ``n * int`` (entries outside ``[0, n_bins)`` are ignored).
        probs: probabilities in [0, 1], shape ``(n_q,)`` or ``(n_bins, n_q)`` (one row per
            bin).
        n_bins: number of bins.
        weights: per-event weights (non-negative).

    Returns:
        ``(n_bins, n_q)`` quantiles; NaN for empty bins.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(bins).ravel().astype(np.intp)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if np.any(w < 0):
        msg = "weighted_binned_quantiles: expected non-negative weights, found negative ones"
        raise StatisticsInputError(msg)
    keep = (b >= 0) & (b < n_bins) & (w > 0)
    v, b, w = v[keep], b[keep], w[keep]
    p = np.asarray(probs, dtype=np.float64)
    p = np.broadcast_to(p if p.ndim == 2 else p[None, :], (n_bins, p.shape[-1]))
    order = np.lexsort((v, b))
    v, b, w = v[order], b[order], w[order]
    start = np.searchsorted(b, np.arange(n_bins), side="left")
    stop = np.searchsorted(b, np.arange(n_bins), side="right")
    cw = np.cumsum(w)
    before = np.concatenate([[0.0], cw])[start]  # weight in earlier bins
    total = np.concatenate([[0.0], cw])[stop] - before
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (cw - w / 2 - before[b]) / total[b]
    # b + F is increasing along the sorted array (F in (0, 1)), so one searchsorted finds
    # every (bin, probability) target
    key = b + f
    target = np.arange(n_bins)[:, None] + p
    hi = np.searchsorted(key, target, side="left")
    lo = hi - 1
    s0, s1 = start[:, None], stop[:, None] - 1
    empty = (stop - start) == 0
    hi = np.clip(hi, s0, np.maximum(s1, s0))
    lo = np.clip(lo, s0, np.maximum(s1, s0))
    if v.size == 0:
        return np.full(p.shape, np.nan)
    hi = np.minimum(hi, v.size - 1)
    lo = np.minimum(lo, v.size - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(f[hi] > f[lo], (p - f[lo]) / (f[hi] - f[lo]), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    out = v[lo] + frac * (v[hi] - v[lo])
    out[empty, :] = np.nan
    return out


def _poly_eval(coef: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Polynomials with coefficients ``coef`` (n_q, degree+1), lowest first, at ``t`` (n,)."""
    out = np.zeros((t.size, coef.shape[0]))
    for c in coef.T[::-1]:  # Horner over the degree (a handful of terms), columnar in t
        out = out * t[:, None] + c[None, :]
    return out


def _categories(thr: NDArray[np.float64], score: NDArray[np.float64]) -> NDArray[np.intp]:
    # sorting each row is the monotone rearrangement of crossing quantile curves
    # (Chernozhukov, Fernandez-Val, Galichon, Econometrica 78 (2010) 1093)
    return np.count_nonzero(score[:, None] >= np.sort(thr, axis=1), axis=1).astype(np.intp)


@dataclass(frozen=True)
class QuantileThresholds:
    """Score thresholds at background quantiles as functions of m_jj.

    Attributes:
        quantiles: the background quantiles q (increasing); ``score >= threshold(q)`` keeps a
            fraction 1 - q of the background in every m_jj slice.
        mass_edges: m_jj bin edges of the binned estimate (GeV).
        binned: empirical thresholds per bin, ``(n_bins, n_q)`` (NaN in empty bins).
        binned_err: their statistical uncertainty (order-statistics interval).
        coefficients: smooth-fit polynomial coefficients, ``(n_q, degree + 1)``, lowest order
            first, in t = (clip(m_jj, lo, hi) - center) / scale.
        center: centre of the fit variable (GeV).
        scale: scale of the fit variable (GeV).
        fit: ``"poly"`` to evaluate the smooth fit, ``"binned"`` the bin values.
        variable: name of the m_jj input in the correctionlib export.
    """

    quantiles: NDArray[np.float64]
    mass_edges: NDArray[np.float64]
    binned: NDArray[np.float64]
    binned_err: NDArray[np.float64]
    coefficients: NDArray[np.float64]
    center: float
    scale: float
    fit: FitKind = "poly"
    variable: str = "mjj"

    def evaluate(self, mjj: ArrayLike) -> NDArray[np.float64]:
        """Thresholds at ``mjj`` (GeV), ``(n, n_q)``; held constant outside the edges."""
        m = np.asarray(mjj, dtype=np.float64).ravel()
        lo, hi = float(self.mass_edges[0]), float(self.mass_edges[-1])
        if self.fit == "binned":
            i = np.clip(np.searchsorted(self.mass_edges, m, side="right") - 1, 0,
                        self.binned.shape[0] - 1)
            return self.binned[i]
        t = (np.clip(m, lo, hi) - self.center) / self.scale
        return _poly_eval(self.coefficients, t)

    def categories(self, score: ArrayLike, mjj: ArrayLike) -> NDArray[np.intp]:
        """Category per event: how many thresholds its score passes (0 ... n_q)."""
        s = np.asarray(score, dtype=np.float64).ravel()
        return _categories(self.evaluate(mjj), s)


def quantile_thresholds(
    score: ArrayLike,
    mjj: ArrayLike,
    *,
    quantiles: ArrayLike = (0.5, 0.9, 0.99),
    mass_edges: ArrayLike,
    weights: ArrayLike | None = None,
    degree: int = 3,
    fit: FitKind = "poly",
    variable: str = "mjj",
) -> QuantileThresholds:
    """Estimate score thresholds at background quantiles as smooth functions of m_jj.

    Args:
        score: per-event anomaly score of a background(-dominated) sample, e.g. the
            |Delta eta_jj| > 1.4 sideband.
        mjj: per-event m_jj (GeV).
        quantiles: background quantiles, increasing, in (0, 1).
        mass_edges: m_jj bins of the empirical estimate; events outside are not used.
        weights: per-event weights (non-negative).
        degree: degree of the polynomial fitted to the binned thresholds, weighted by their
            uncertainties.
        fit: what :meth:`QuantileThresholds.evaluate` uses: the smooth ``"poly"`` fit, or the
            ``"binned"`` values (piecewise constant).
        variable: name of the m_jj input in the correctionlib export.

    Returns:
        :class:`QuantileThresholds`. The uncertainty of a binned threshold is half the
        distance between the quantiles at q -+ sqrt(q (1 - q) / N_eff), the binomial
        spread of the empirical CDF at the threshold.
    """
    s = np.asarray(score, dtype=np.float64).ravel()
    m = np.asarray(mjj, dtype=np.float64).ravel()
    if s.shape != m.shape:
        msg = (
            "quantile_thresholds: expected score and mjj of equal length, "
            f"found {s.size}, {m.size}"
        )
        raise StatisticsInputError(msg)
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    q = np.asarray(quantiles, dtype=np.float64).ravel()
    if q.size == 0 or np.any((q <= 0) | (q >= 1)) or np.any(np.diff(q) <= 0):
        msg = f"quantile_thresholds: expected increasing quantiles in (0, 1), found {q}"
        raise StatisticsInputError(msg)
    if fit not in ("poly", "binned"):
        msg = f"quantile_thresholds: expected fit 'poly' or 'binned', found {fit!r}"
        raise StatisticsInputError(msg)
    edges = np.asarray(mass_edges, dtype=np.float64)
    nb = edges.size - 1
    if nb < 1 or np.any(np.diff(edges) <= 0):
        msg = f"quantile_thresholds: expected increasing mass_edges, found {edges}"
        raise StatisticsInputError(msg)
    b = np.searchsorted(edges, m, side="right") - 1
    inside = (b >= 0) & (b < nb)
    sumw = np.bincount(b[inside], weights=w[inside], minlength=nb)
    sumw2 = np.bincount(b[inside], weights=w[inside] ** 2, minlength=nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(sumw2 > 0, sumw**2 / sumw2, 0.0)
        delta = np.sqrt(q[None, :] * (1 - q[None, :]) / n_eff[:, None])
    probs = np.concatenate([q[None, :].repeat(nb, 0), np.clip(q - delta, 0, 1),
                            np.clip(q + delta, 0, 1)], axis=1)
    allq = weighted_binned_quantiles(s, b, probs, n_bins=nb, weights=w)
    binned, qlo, qhi = np.split(allq, 3, axis=1)
    err = 0.5 * (qhi - qlo)
    center = 0.5 * (edges[0] + edges[-1])
    scale = 0.5 * (edges[-1] - edges[0])
    t = (0.5 * (edges[1:] + edges[:-1]) - center) / scale
    coef = np.full((q.size, degree + 1), np.nan)
    for k in range(q.size):  # one small weighted least-squares per quantile
        ok = np.isfinite(binned[:, k]) & (err[:, k] > 0)
        if np.count_nonzero(ok) < degree + 1:
            if fit == "poly":
                msg = (
                    f"quantile_thresholds: the degree-{degree} fit of quantile {q[k]} needs "
                    f"{degree + 1} m_jj bins with a measurable threshold, found "
                    f"{np.count_nonzero(ok)}; use fewer bins, a lower degree, or more events"
                )
                raise StatisticsInputError(msg)
            continue
        coef[k] = np.polynomial.polynomial.polyfit(t[ok], binned[ok, k], degree, w=1 / err[ok, k])
    return QuantileThresholds(
        quantiles=q,
        mass_edges=edges,
        binned=binned,
        binned_err=err,
        coefficients=coef,
        center=float(center),
        scale=float(scale),
        fit=fit,
        variable=variable,
    )


def quantile_categories(
    score: ArrayLike, mjj: ArrayLike, thresholds: QuantileThresholds | CorrectionlibThresholds
) -> NDArray[np.intp]:
    """Category (0 ... n_q) of each event: how many quantile thresholds its score passes.

    Args:
        score: per-event score.
        mjj: per-event m_jj (GeV).
        thresholds: from :func:`quantile_thresholds` or :func:`thresholds_from_correctionlib`.

    Returns:
        ``n * int`` categories.
    """
    return thresholds.categories(score, mjj)


def category_shape_test(
    selected: ArrayLike, total: ArrayLike
) -> tuple[float, int, float]:
    """Is the fraction selected/total the same in every m_jj bin? (chi2 test of flatness)

    With k_i of n_i events selected in bin i and the common efficiency e = sum k / sum n,
    chi2 = sum (k_i - n_i e)^2 / (n_i e (1 - e)) has n_bins - 1 degrees of freedom when the
    selection keeps the m_jj shape (the binomial test of homogeneity). Use event counts, not
    weighted sums.

    Args:
        selected: events of the category per m_jj bin.
        total: all events per m_jj bin (the category is a subset of them).

    Returns:
        ``(chi2, ndf, p_value)``; bins with no events are skipped.
    """
    k = np.asarray(selected, dtype=np.float64).ravel()
    n = np.asarray(total, dtype=np.float64).ravel()
    if k.shape != n.shape or np.any(k > n) or np.any(k < 0):
        msg = (
            "category_shape_test: expected 0 <= selected <= total bin by bin with equal "
            f"lengths, found lengths {k.size}, {n.size}"
        )
        raise StatisticsInputError(msg)
    ok = n > 0
    eff = k[ok].sum() / n[ok].sum()
    if not 0 < eff < 1:
        msg = f"category_shape_test: expected an overall fraction in (0, 1), found {eff}"
        raise StatisticsInputError(msg)
    chi2 = float(np.sum((k[ok] - n[ok] * eff) ** 2 / (n[ok] * eff * (1 - eff))))
    ndf = int(np.count_nonzero(ok) - 1)
    return chi2, ndf, float(_special.chdtrc(ndf, chi2))


def thresholds_to_correctionlib(
    thresholds: QuantileThresholds,
    *,
    name: str = "qr_threshold",
    description: str = "",
    path: str | Path | None = None,
) -> Any:
    """Export the thresholds as a correctionlib ``CorrectionSet`` (schema v2).

    Two corrections are written: ``name`` with inputs (``thresholds.variable`` real GeV,
    ``quantile_index`` int) and output the score threshold, and ``name + "_quantile"``
    mapping ``quantile_index`` to the quantile q. The smooth fit is a TFormula polynomial that
    clamps m_jj to the fitted range; the binned version a ``Binning`` with ``flow="clamp"``.

    Args:
        thresholds: from :func:`quantile_thresholds`.
        name: correction name.
        description: free text stored with the correction (what score, which sample).
        path: if given, write the JSON there.

    Returns:
        The ``correctionlib.schemav2.CorrectionSet``.
    """
    from coffea_ad._optional import require

    cs = require("correctionlib.schemav2", purpose="exporting thresholds")
    lo, hi = float(thresholds.mass_edges[0]), float(thresholds.mass_edges[-1])
    items = []
    for k in range(thresholds.quantiles.size):
        if thresholds.fit == "poly":
            t = f"((max(min(x,{hi!r}),{lo!r})-{thresholds.center!r})/{thresholds.scale!r})"
            coef = thresholds.coefficients[k]
            expr = f"[{coef.size - 1}]"
            for i in range(coef.size - 2, -1, -1):  # Horner form
                expr = f"[{i}]+{t}*({expr})"
            node: Any = cs.Formula(
                nodetype="formula",
                parser="TFormula",
                expression=expr,
                variables=[thresholds.variable],
                parameters=[float(c) for c in coef],
            )
        else:
            vals = thresholds.binned[:, k]
            if not np.all(np.isfinite(vals)):
                msg = (
                    "thresholds_to_correctionlib: binned thresholds have empty m_jj bins "
                    f"(quantile {thresholds.quantiles[k]}); use fit='poly' or coarser bins"
                )
                raise StatisticsInputError(msg)
            node = cs.Binning(
                nodetype="binning",
                input=thresholds.variable,
                edges=[float(e) for e in thresholds.mass_edges],
                content=[float(v) for v in vals],
                flow="clamp",
            )
        items.append(cs.CategoryItem(key=k, value=node))
    qlist = ", ".join(f"{k}: {q:g}" for k, q in enumerate(thresholds.quantiles))
    corr = cs.Correction(
        name=name,
        description=(description + " " if description else "")
        + f"Score threshold at background quantile (quantile_index -> q: {qlist}); "
        "an event is in category k when its score passes k thresholds.",
        version=1,
        inputs=[
            cs.Variable(name=thresholds.variable, type="real", description="m_jj in GeV"),
            cs.Variable(name="quantile_index", type="int", description=f"index into {qlist}"),
        ],
        output=cs.Variable(name="score_threshold", type="real"),
        data=cs.Category(nodetype="category", input="quantile_index", content=items),
    )
    qcorr = cs.Correction(
        name=name + "_quantile",
        description=f"Background quantile q of each quantile_index of {name}.",
        version=1,
        inputs=[cs.Variable(name="quantile_index", type="int")],
        output=cs.Variable(name="quantile", type="real"),
        data=cs.Category(
            nodetype="category",
            input="quantile_index",
            content=[
                cs.CategoryItem(key=k, value=float(q)) for k, q in enumerate(thresholds.quantiles)
            ],
        ),
    )
    cset = cs.CorrectionSet(schema_version=2, corrections=[corr, qcorr])
    if path is not None:
        atomic_write_text(path, cset.model_dump_json(exclude_unset=True, indent=1))
    return cset


@dataclass(frozen=True)
class CorrectionlibThresholds:
    """Thresholds read back from a correctionlib JSON written by
    :func:`thresholds_to_correctionlib`.

    Attributes:
        quantiles: background quantile of each threshold.
        correction: the evaluable ``correctionlib`` correction.
    """

    quantiles: NDArray[np.float64]
    correction: Any

    def evaluate(self, mjj: ArrayLike) -> NDArray[np.float64]:
        """Thresholds at ``mjj`` (GeV), ``(n, n_q)``."""
        m = np.asarray(mjj, dtype=np.float64).ravel()
        cols = [
            self.correction.evaluate(m, np.full(m.size, k, dtype=np.int64))
            for k in range(self.quantiles.size)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((m.size, 0))

    def categories(self, score: ArrayLike, mjj: ArrayLike) -> NDArray[np.intp]:
        """Category per event: how many thresholds its score passes (0 ... n_q)."""
        return _categories(self.evaluate(mjj), np.asarray(score, dtype=np.float64).ravel())


def thresholds_from_correctionlib(
    source: str | Path | Any, *, name: str = "qr_threshold"
) -> CorrectionlibThresholds:
    """Read thresholds exported by :func:`thresholds_to_correctionlib`.

    Args:
        source: path of the JSON file, or a ``schemav2.CorrectionSet``.
        name: correction name used at export.

    Returns:
        :class:`CorrectionlibThresholds`.
    """
    from coffea_ad._optional import require

    correctionlib = require("correctionlib", purpose="reading thresholds")
    if isinstance(source, str | Path):
        text = Path(source).read_text()
    else:
        text = source.model_dump_json(exclude_unset=True)
    cset = correctionlib.CorrectionSet.from_string(text)
    have = list(cset.keys())
    for needed in (name, name + "_quantile"):
        if needed not in have:
            from coffea_ad.errors import UnknownNameError

            raise UnknownNameError("correction", needed, have)
    qcorr = cset[name + "_quantile"]
    n_q = len(json.loads(text)["corrections"][have.index(name + "_quantile")]["data"]["content"])
    quantiles = np.array([qcorr.evaluate(k) for k in range(n_q)], dtype=np.float64)
    return CorrectionlibThresholds(quantiles=quantiles, correction=cset[name])
