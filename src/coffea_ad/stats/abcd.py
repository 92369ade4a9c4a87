"""ABCD background estimate from two variables, per bin of a mass (m_T), and its closure test.

Two variables ``x`` (the anomaly score) and ``y`` (a second discriminant) with one cut each
split events into four regions::

            y
            ^
      C     |     A          A: x pass, y pass   (signal region)
   ---------+---------       B: x pass, y fail
      D     |     B          C: x fail, y pass
            +-------> x      D: x fail, y fail

If ``x`` and ``y`` are independent for the background, N_A = N_B N_C / N_D. The prediction's
uncertainty propagates the statistical uncertainties of B, C and D (sum of w^2 per region)
in quadrature on the relative scale. The method, and the DisCo regulariser that makes a
network output independent of a second variable, are in Kasieczka, Nachman, Schwartz, Shih,
"ABCDisCo", arXiv:2007.14400; the CMS semivisible-jet search applies it per m_T bin.

Every function accepts per-event arrays, a ``hist.Hist`` (axes: x, y and optionally the
mass), or already-counted :class:`ABCDCounts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy.special, not scipy.stats: the latter takes seconds to import for two functions
from scipy import special as _special

from coffea_ad.errors import StatisticsInputError

__all__ = [
    "ABCDClosure",
    "ABCDCounts",
    "ABCDPrediction",
    "abcd_closure",
    "abcd_predict",
    "abcd_regions",
    "merged_mass_edges",
    "score_cut",
    "snap_to_edge",
]

Direction = Literal["above", "below"]


@dataclass(frozen=True)
class ABCDCounts:
    """Weighted yields and their variances (sum of w^2) in the four regions.

    Each array has shape ``(n_mass_bins,)``, or ``()`` when no mass binning is used.

    Attributes:
        a, b, c, d: yields in regions A (x pass, y pass), B (x pass, y fail),
            C (x fail, y pass), D (x fail, y fail).
        var_a, var_b, var_c, var_d: their variances.
        mass_edges: edges of the mass bins, or ``None``.
    """

    a: NDArray[np.float64]
    b: NDArray[np.float64]
    c: NDArray[np.float64]
    d: NDArray[np.float64]
    var_a: NDArray[np.float64]
    var_b: NDArray[np.float64]
    var_c: NDArray[np.float64]
    var_d: NDArray[np.float64]
    mass_edges: NDArray[np.float64] | None = None

    def integrated(self) -> ABCDCounts:
        """The same regions summed over all mass bins."""
        return ABCDCounts(
            *(np.asarray(np.sum(v)) for v in (self.a, self.b, self.c, self.d)),
            *(np.asarray(np.sum(v)) for v in (self.var_a, self.var_b, self.var_c, self.var_d)),
            mass_edges=None,
        )


@dataclass(frozen=True)
class ABCDPrediction:
    """N_A predicted from B, C, D next to the N_A observed.

    Attributes:
        counts: the region yields the prediction comes from.
        predicted: N_B N_C / N_D (NaN where N_D = 0).
        predicted_err: its statistical uncertainty.
        observed: N_A.
        observed_err: sqrt(sum w^2) in A.
    """

    counts: ABCDCounts
    predicted: NDArray[np.float64]
    predicted_err: NDArray[np.float64]
    observed: NDArray[np.float64]
    observed_err: NDArray[np.float64]

    @property
    def ratio(self) -> NDArray[np.float64]:
        """observed / predicted."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.observed / self.predicted

    @property
    def pull(self) -> NDArray[np.float64]:
        """(observed - predicted) / sqrt(err_obs^2 + err_pred^2); NaN where undefined.

        A and (B, C, D) are disjoint event sets, so their uncertainties add in quadrature.
        Where A is empty its measured sqrt(sum w^2) is 0, which would overstate the pull of a
        downward fluctuation; there the observation's variance is the one expected if the
        prediction were true, predicted x w_mean, with w_mean = sum w^2 / sum w of the control
        regions B, C, D of that bin (the weighted-Poisson variance; 1 x predicted for
        unweighted events).
        """
        c = self.counts
        obs_var = np.asarray(self.observed_err, dtype=np.float64) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            control_w = np.asarray(c.b, dtype=np.float64) + c.c + c.d
            w_mean = np.where(control_w > 0, (np.asarray(c.var_b, dtype=np.float64) + c.var_c + c.var_d)
                              / control_w, np.nan)
            empty = (self.observed == 0) & (obs_var == 0) & (self.predicted > 0)
            obs_var = np.where(empty, self.predicted * w_mean, obs_var)
            den = np.sqrt(obs_var + self.predicted_err**2)
            return np.where(den > 0, (self.observed - self.predicted) / den, np.nan)


@dataclass(frozen=True)
class ABCDClosure:
    """Closure test of the ABCD prediction in a background-only sample.

    Attributes:
        prediction: per-mass-bin prediction and observation.
        integrated: the same for the yields summed over mass bins.
        chi2: sum of squared per-bin pulls over bins where the pull is defined.
        ndf: number of such bins.
        p_value: chi2 survival probability; small values mean the method does not close
            (x and y are correlated for this background).
        alpha: test size used by :attr:`closes`.
    """

    prediction: ABCDPrediction
    integrated: ABCDPrediction
    chi2: float
    ndf: int
    p_value: float
    alpha: float = 0.05

    @property
    def closes(self) -> bool:
        """True when the p-value is at least ``alpha``: no sign that x and y are correlated."""
        return bool(self.p_value >= self.alpha)

    @property
    def pull(self) -> NDArray[np.float64]:
        """Per-bin pulls (observed - predicted) / uncertainty."""
        return self.prediction.pull

    @property
    def max_abs_pull(self) -> float:
        """Largest |pull| over the mass bins (NaN bins ignored)."""
        return float(np.nanmax(np.abs(np.atleast_1d(self.pull))))


def _select(
    values: NDArray[np.float64], cut: float, direction: Direction, name: str
) -> NDArray[np.bool_]:
    if direction == "above":
        return values >= cut
    if direction == "below":
        return values < cut
    msg = f"{name}_pass: expected 'above' or 'below', found {direction!r}"
    raise StatisticsInputError(msg)


def _counts_from_arrays(
    x: ArrayLike,
    y: ArrayLike,
    *,
    x_cut: float,
    y_cut: float,
    x_pass: Direction,
    y_pass: Direction,
    weights: ArrayLike | None,
    mass: ArrayLike | None,
    mass_edges: ArrayLike | None,
) -> ABCDCounts:
    xv = np.asarray(x, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    if xv.shape != yv.shape:
        msg = f"ABCD: expected x and y of equal length, found {xv.size} and {yv.size}"
        raise StatisticsInputError(msg)
    w = np.ones_like(xv) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != xv.shape:
        msg = f"ABCD: expected one weight per event ({xv.size}), found {w.size}"
        raise StatisticsInputError(msg)
    px = _select(xv, x_cut, x_pass, "x")
    py = _select(yv, y_cut, y_pass, "y")
    # region index: A=0, B=1, C=2, D=3
    region = np.where(px, np.where(py, 0, 1), np.where(py, 2, 3))
    if (mass is None) != (mass_edges is None):
        msg = "ABCD: expected both mass= and mass_edges= or neither, found only one"
        raise StatisticsInputError(msg)
    if mass is None:
        nbins, mbin, edges = 1, np.zeros(xv.size, dtype=np.intp), None
        inside = np.ones(xv.size, bool)
    else:
        m = np.asarray(mass, dtype=np.float64).ravel()
        if m.shape != xv.shape:
            msg = f"ABCD: expected one mass per event ({xv.size}), found {m.size}"
            raise StatisticsInputError(msg)
        edges = np.asarray(mass_edges, dtype=np.float64)
        nbins = edges.size - 1
        if nbins < 1 or np.any(np.diff(edges) <= 0):
            msg = f"ABCD: expected increasing mass_edges with >= 2 entries, found {edges}"
            raise StatisticsInputError(msg)
        # events outside the mass range are not in any bin (like hist without flow)
        mbin = np.searchsorted(edges, m, side="right") - 1
        inside = (mbin >= 0) & (mbin < nbins)
    idx = region[inside] * nbins + mbin[inside]
    sums = np.bincount(idx, weights=w[inside], minlength=4 * nbins).reshape(4, nbins)
    sumw2 = np.bincount(idx, weights=w[inside] ** 2, minlength=4 * nbins).reshape(4, nbins)
    if mass is None:
        sums, sumw2 = sums[:, 0], sumw2[:, 0]
    return ABCDCounts(*sums, *sumw2, mass_edges=edges)


def _axis_index(h: Any, name: str) -> int:
    names = [ax.name for ax in h.axes]
    if name not in names:
        from coffea_ad.errors import UnknownNameError

        raise UnknownNameError("histogram axis", name, names)
    return names.index(name)


def _edge_index(axis: Any, cut: float) -> int:
    edges = np.asarray(axis.edges)
    k = int(np.argmin(np.abs(edges - cut)))
    if not np.isclose(edges[k], cut, rtol=1e-9, atol=1e-12):
        lo = edges[edges <= cut]
        hi = edges[edges > cut]
        # 10 significant digits: Regular axes compute edges as 0.7999999999999998
        near = [float(f"{v:.10g}") for v in (*lo[-1:], *hi[:1])]
        msg = (
            f"ABCD: cut {cut} on axis {axis.name!r} must lie on a bin edge of the histogram; "
            f"nearest edges: {near}"
        )
        raise StatisticsInputError(msg)
    return k


def snap_to_edge(axis: Any, cut: float) -> float:
    """The bin edge of a histogram ``axis`` nearest to ``cut`` (``cut`` itself when it is an
    edge), for callers that prefer moving a cut to the binning over refusing it; they should
    say that they did. Edges print with 10 significant digits (a Regular axis computes
    0.7999999999999998 for 0.8).
    """
    edges = np.asarray(axis.edges, dtype=np.float64)
    return float(f"{edges[int(np.argmin(np.abs(edges - cut)))]:.10g}")


def _counts_from_hist(
    h: Any,
    *,
    x_axis: str,
    y_axis: str,
    mass_axis: str | None,
    x_cut: float,
    y_cut: float,
    x_pass: Direction,
    y_pass: Direction,
) -> ABCDCounts:
    wanted = [x_axis, y_axis] + ([mass_axis] if mass_axis else [])
    idx = [_axis_index(h, n) for n in wanted]
    extra = [ax.name for ax in h.axes if ax.name not in wanted]
    if extra:
        msg = (
            f"ABCD: expected a histogram with axes {wanted} only, found extra axes {extra}; "
            "select or sum them first, e.g. h[{'dataset': 'qcd', 'category': sum}]"
        )
        raise StatisticsInputError(msg)
    values = np.asarray(h.values(flow=True), dtype=np.float64)
    variances = h.variances(flow=True)
    if variances is None:
        msg = f"ABCD: histogram storage {h.storage_type.__name__} has no variances"
        raise StatisticsInputError(msg)
    variances = np.asarray(variances, dtype=np.float64)
    values = np.moveaxis(values, idx, range(len(idx)))
    variances = np.moveaxis(variances, idx, range(len(idx)))

    def split(axis: Any, cut: float, direction: Direction, name: str) -> tuple[slice, slice]:
        # flow bins count: an event beyond the axis range is still above/below the cut
        k = _edge_index(axis, cut) + (1 if axis.traits.underflow else 0)
        above, below = slice(k, None), slice(0, k)
        if direction not in ("above", "below"):
            msg = f"{name}_pass: expected 'above' or 'below', found {direction!r}"
            raise StatisticsInputError(msg)
        return (above, below) if direction == "above" else (below, above)

    xp, xf = split(h.axes[x_axis], x_cut, x_pass, "x")
    yp, yf = split(h.axes[y_axis], y_cut, y_pass, "y")
    if mass_axis:
        m_ax = h.axes[mass_axis]
        u = 1 if m_ax.traits.underflow else 0
        ms = slice(u, u + len(m_ax))  # mass flow bins are not a mass bin
        edges = np.asarray(m_ax.edges, dtype=np.float64)
    else:
        ms, edges = slice(None), None

    def region(arr: NDArray[np.float64], sx: slice, sy: slice) -> NDArray[np.float64]:
        return arr[sx, sy][:, :, ms].sum(axis=(0, 1)) if mass_axis else np.asarray(
            arr[sx, sy].sum()
        )

    regions = [(xp, yp), (xp, yf), (xf, yp), (xf, yf)]
    return ABCDCounts(
        *(region(values, sx, sy) for sx, sy in regions),
        *(region(variances, sx, sy) for sx, sy in regions),
        mass_edges=edges,
    )


def abcd_regions(
    data: Any,
    y: ArrayLike | None = None,
    *,
    x_cut: float,
    y_cut: float,
    x_pass: Direction = "above",
    y_pass: Direction = "above",
    weights: ArrayLike | None = None,
    mass: ArrayLike | None = None,
    mass_edges: ArrayLike | None = None,
    x_axis: str = "score",
    y_axis: str | None = None,
    mass_axis: str | None = None,
) -> ABCDCounts:
    """Yields of regions A, B, C, D from per-event arrays or from a histogram.

    Args:
        data: the x values per event (with ``y``), or a ``hist.Hist`` whose axes are exactly
            ``x_axis``, ``y_axis`` and optionally ``mass_axis`` (select other axes first).
        y: the y values per event (arrays only).
        x_cut: cut on x; with a histogram it must be a bin edge.
        y_cut: cut on y; with a histogram it must be a bin edge.
        x_pass: whether x passes ``"above"`` (``x >= x_cut``) or ``"below"`` (``x < x_cut``).
        y_pass: the same for y.
        weights: per-event weights (arrays only).
        mass: per-event mass (e.g. m_T) for a per-bin estimate (arrays only).
        mass_edges: the mass bin edges (arrays only); events outside are dropped.
        x_axis: name of the x axis (histogram only).
        y_axis: name of the y axis (histogram only).
        mass_axis: name of the mass axis (histogram only); its flow bins are dropped, while
            the flow bins of the x and y axes are counted on their side of the cut.

    Returns:
        :class:`ABCDCounts`.
    """
    if hasattr(data, "axes") and hasattr(data, "values"):
        if y_axis is None:
            names = [ax.name for ax in data.axes]
            msg = f"ABCD: expected y_axis= naming the second variable's axis; axes are {names}"
            raise StatisticsInputError(msg)
        return _counts_from_hist(
            data,
            x_axis=x_axis,
            y_axis=y_axis,
            mass_axis=mass_axis,
            x_cut=x_cut,
            y_cut=y_cut,
            x_pass=x_pass,
            y_pass=y_pass,
        )
    if y is None:
        msg = "ABCD: expected per-event x and y arrays (or a hist.Hist), found no y"
        raise StatisticsInputError(msg)
    return _counts_from_arrays(
        data,
        y,
        x_cut=x_cut,
        y_cut=y_cut,
        x_pass=x_pass,
        y_pass=y_pass,
        weights=weights,
        mass=mass,
        mass_edges=mass_edges,
    )


def _predict(counts: ABCDCounts) -> ABCDPrediction:
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (counts.a, counts.b, counts.c, counts.d))
    with np.errstate(divide="ignore", invalid="ignore"):
        pred = np.where(d > 0, b * c / d, np.nan)
        rel2 = counts.var_b / b**2 + counts.var_c / c**2 + counts.var_d / d**2
        # N_B or N_C = 0 gives pred = 0 with an undefined relative error: use the absolute
        # one, C/D * sigma_B (or B/D * sigma_C), which is what the derivative gives
        err = np.where(
            (b > 0) & (c > 0),
            np.abs(pred) * np.sqrt(rel2),
            np.sqrt((c / d) ** 2 * counts.var_b + (b / d) ** 2 * counts.var_c),
        )
    err = np.where(d > 0, err, np.nan)
    return ABCDPrediction(
        counts=counts,
        predicted=pred,
        predicted_err=err,
        observed=a,
        observed_err=np.sqrt(np.asarray(counts.var_a, dtype=np.float64)),
    )


def _counts(data: Any, y: ArrayLike | None, *, x_cut: float | None, y_cut: float | None,
            **options: Any) -> ABCDCounts:
    if isinstance(data, ABCDCounts):
        return data
    if x_cut is None or y_cut is None:
        msg = (
            "ABCD: expected x_cut= and y_cut= with arrays or a histogram, found "
            f"x_cut={x_cut}, y_cut={y_cut}"
        )
        raise StatisticsInputError(msg)
    return abcd_regions(data, y, x_cut=x_cut, y_cut=y_cut, **options)


def abcd_predict(
    data: Any,
    y: ArrayLike | None = None,
    *,
    x_cut: float | None = None,
    y_cut: float | None = None,
    x_pass: Direction = "above",
    y_pass: Direction = "above",
    weights: ArrayLike | None = None,
    mass: ArrayLike | None = None,
    mass_edges: ArrayLike | None = None,
    x_axis: str = "score",
    y_axis: str | None = None,
    mass_axis: str | None = None,
) -> ABCDPrediction:
    """ABCD prediction N_A = N_B N_C / N_D with its uncertainty, per mass bin if binned.

    Args:
        data: :class:`ABCDCounts`, per-event x values (with ``y``), or a ``hist.Hist``.
        y: per-event y values (arrays only).
        x_cut: cut on x (required unless ``data`` is :class:`ABCDCounts`); see
            :func:`abcd_regions` for this and the other options, which are ignored for
            :class:`ABCDCounts`.
        y_cut: cut on y (required likewise).
        x_pass: ``"above"`` or ``"below"``.
        y_pass: ``"above"`` or ``"below"``.
        weights: per-event weights (arrays only).
        mass: per-event mass (arrays only).
        mass_edges: mass bin edges (arrays only).
        x_axis: histogram axis of x.
        y_axis: histogram axis of y.
        mass_axis: histogram axis of the mass.

    Returns:
        :class:`ABCDPrediction`; the uncertainty is
        N_A * sqrt((s_B/N_B)^2 + (s_C/N_C)^2 + (s_D/N_D)^2), s^2 = sum w^2.
    """
    counts = _counts(
        data, y, x_cut=x_cut, y_cut=y_cut, x_pass=x_pass, y_pass=y_pass, weights=weights,
        mass=mass, mass_edges=mass_edges, x_axis=x_axis, y_axis=y_axis, mass_axis=mass_axis,
    )
    return _predict(counts)


def abcd_closure(
    data: Any,
    y: ArrayLike | None = None,
    *,
    x_cut: float | None = None,
    y_cut: float | None = None,
    x_pass: Direction = "above",
    y_pass: Direction = "above",
    weights: ArrayLike | None = None,
    mass: ArrayLike | None = None,
    mass_edges: ArrayLike | None = None,
    x_axis: str = "score",
    y_axis: str | None = None,
    mass_axis: str | None = None,
    alpha: float = 0.05,
) -> ABCDClosure:
    """Closure test: does the ABCD prediction reproduce region A in a background sample?

    Args:
        data: :class:`ABCDCounts`, per-event x values (with ``y``), or a ``hist.Hist``.
        y: per-event y values (arrays only).
        x_cut: cut on x; this and the options up to ``mass_axis`` as in :func:`abcd_predict`.
        y_cut: cut on y.
        x_pass: ``"above"`` or ``"below"``.
        y_pass: ``"above"`` or ``"below"``.
        weights: per-event weights (arrays only).
        mass: per-event mass (arrays only).
        mass_edges: mass bin edges (arrays only).
        x_axis: histogram axis of x.
        y_axis: histogram axis of y.
        mass_axis: histogram axis of the mass.
        alpha: p-value below which :attr:`ABCDClosure.closes` is False.

    Returns:
        :class:`ABCDClosure` with per-bin pulls, their chi2 and p-value, and the integrated
        prediction (regions summed over mass bins before predicting).
    """
    counts = _counts(
        data, y, x_cut=x_cut, y_cut=y_cut, x_pass=x_pass, y_pass=y_pass, weights=weights,
        mass=mass, mass_edges=mass_edges, x_axis=x_axis, y_axis=y_axis, mass_axis=mass_axis,
    )
    pred = _predict(counts)
    pulls = np.atleast_1d(pred.pull)
    ok = np.isfinite(pulls)
    chi2 = float(np.sum(pulls[ok] ** 2))
    ndf = int(np.count_nonzero(ok))
    p = float(_special.chdtrc(ndf, chi2)) if ndf else float("nan")
    return ABCDClosure(
        prediction=pred,
        integrated=_predict(counts.integrated()),
        chi2=chi2,
        ndf=ndf,
        p_value=p,
        alpha=alpha,
    )


def merged_mass_edges(counts: np.ndarray, edges: np.ndarray, *, n_bins: int) -> np.ndarray:
    """Merge adjacent mass bins until each holds at least ``1/n_bins`` of the total.

    Args:
        counts: yields per fine bin, ``len(edges) - 1``.
        edges: fine bin edges.
        n_bins: the number of merged bins aimed at.

    Returns:
        The merged edges (a subset of ``edges``) spanning only the bins with events; the last
        merged bin absorbs a remainder below the minimum.
    """
    counts = np.asarray(counts, dtype=np.float64)
    filled = np.flatnonzero(counts > 0)
    if filled.size == 0:
        msg = "merged_mass_edges: expected a mass distribution with events, found none"
        raise StatisticsInputError(msg)
    lo, hi = filled[0], filled[-1] + 1
    need = counts.sum() / n_bins
    out, acc = [edges[lo]], 0.0
    for i in range(lo, hi):
        acc += counts[i]
        if acc >= need and i + 1 < hi:
            out.append(edges[i + 1])
            acc = 0.0
    if acc > 0 and acc < need and len(out) > 1:
        out.pop()  # the remainder joins the previous bin
    out.append(edges[hi])
    return np.asarray(out, dtype=np.float64)


def score_cut(h_score: Any, *, efficiency: float) -> float:
    """The score-axis edge whose upper tail keeps the fraction closest to ``efficiency``.

    Args:
        h_score: 1-d score histogram of the background (flow bins counted).
        efficiency: wanted fraction of background above the cut.

    Returns:
        A bin edge of the score axis (ABCD cuts on a histogram must be bin edges).
    """
    values = np.asarray(h_score.values(flow=True), dtype=np.float64)
    edges = np.asarray(h_score.axes[0].edges)
    # tail[k] = yield above edges[k]: the overflow plus bins k..end (values[0] is underflow)
    tail = np.cumsum(values[::-1])[::-1][1:]
    frac = tail / values.sum()
    return float(edges[int(np.argmin(np.abs(frac - efficiency)))])
