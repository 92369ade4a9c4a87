"""Bump hunt in m_jj: dijet-function background fit, signal + background fit, local significance.

The background is the standard dijet function of the CMS and ATLAS dijet resonance searches
(CMS, Phys. Rev. D 87 (2013) 114015, arXiv:1302.4794; CMS, JHEP 05 (2020) 033,
arXiv:1911.03947)::

    dN/dx = p0 (1 - x)^p1 / x^(p2 + p3 ln x [+ p4 ln^2 x]),     x = m_jj / sqrt(s)

with 3, 4 or 5 parameters. Fits are binned Poisson likelihood fits (iminuit, with the
``ExtendedBinnedNLL`` cost, whose minimum is the Poisson deviance and is asymptotically chi2
distributed) of the expected count in each bin, the bin integral of the function (5-point
Gauss-Legendre per bin). The signal + background fit adds mu * S_i, S the expected signal per
bin at mu = 1 (a Gaussian by default, or any template). The local significance comes from the
profile likelihood ratio q0 = -2 ln [L(0, theta_hat_hat) / L(mu_hat, theta_hat)],
Z = sqrt(q0) for mu_hat >= 0 and 0 otherwise (Cowan, Cranmer, Gross, Vitells,
arXiv:1007.1727, eq. 12 and 52).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy.special, not scipy.stats: the latter takes seconds to import for two functions
from scipy import special as _special

from coffea_ad._optional import require
from coffea_ad.errors import StatisticsInputError

__all__ = [
    "DijetFit",
    "MassScan",
    "SignalFit",
    "dijet_function",
    "fit_dijet_background",
    "fit_signal_plus_background",
    "gaussian_signal",
    "scan_signal_mass",
]

NParams = Literal[3, 4, 5]

# 5-point Gauss-Legendre nodes and weights on [-1, 1]
_GL_X, _GL_W = np.polynomial.legendre.leggauss(5)


def dijet_function(x: ArrayLike, p0: float, p1: float, p2: float, p3: float = 0.0,
                   p4: float = 0.0) -> NDArray[np.float64]:
    """f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x), x = m_jj / sqrt(s).

    Args:
        x: m_jj / sqrt(s), in (0, 1).
        p0: normalisation (events per unit x).
        p1: power of (1 - x).
        p2: power of 1/x.
        p3: coefficient of ln x in the power (0 for the 3-parameter form).
        p4: coefficient of ln^2 x (5-parameter form only).

    Returns:
        f(x), same shape as ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    lx = np.log(x)
    return p0 * np.exp(p1 * np.log1p(-x) - (p2 + p3 * lx + p4 * lx * lx) * lx)


def _log_shape(x: NDArray[np.float64], shape: NDArray[np.float64]) -> NDArray[np.float64]:
    """ln f(x) of the dijet function with p0 = 1 and shape = (p1, ..., p(n-1))."""
    p = np.zeros(4)
    p[: shape.size] = shape
    lx = np.log(x)
    return p[0] * np.log1p(-x) - (p[1] + p[2] * lx + p[3] * lx * lx) * lx


def _shape_integrals(
    xe: NDArray[np.float64], shape: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    """Integral over each bin [xe_i, xe_i+1] of the dijet function with p0 = 1, as
    ``(integrals * exp(-log_scale), log_scale)``.

    The function is evaluated in log space and divided by its largest value in the range
    before exponentiating: over a narrow x range p1, p2, p3 are nearly degenerate and the
    minimiser (or a linear start on a spectrum with a bump) visits values such as
    p1 = -900, p2 = 930, where x^-p2 alone is 1e557 and the plain product overflows to inf
    (then the expected counts are NaN and the fit fails) although the shape inside the range
    is smooth and ordinary.
    """
    half = 0.5 * np.diff(xe)
    mid = 0.5 * (xe[1:] + xe[:-1])
    nodes = mid[:, None] + half[:, None] * _GL_X[None, :]
    log_f = _log_shape(nodes, shape)
    log_scale = float(np.max(log_f))
    if not np.isfinite(log_scale):  # NaN parameters: let the caller see NaN, not a crash
        return np.full(mid.size, np.nan), np.nan
    vals = np.exp(log_f - log_scale)
    return (vals * _GL_W[None, :]).sum(axis=1) * half, log_scale


def _as_counts_edges(counts: Any, edges: ArrayLike | None) -> tuple[NDArray, NDArray]:
    if hasattr(counts, "axes") and hasattr(counts, "values"):
        if len(counts.axes) != 1:
            names = [ax.name for ax in counts.axes]
            msg = f"bump hunt: expected a 1-d m_jj histogram, found axes {names}"
            raise StatisticsInputError(msg)
        n = np.asarray(counts.values(), dtype=np.float64)
        e = np.asarray(counts.axes[0].edges, dtype=np.float64)
    else:
        if edges is None:
            msg = "bump hunt: expected edges= with a counts array (or pass a hist.Hist)"
            raise StatisticsInputError(msg)
        n = np.asarray(counts, dtype=np.float64).ravel()
        e = np.asarray(edges, dtype=np.float64).ravel()
    if e.size != n.size + 1:
        msg = f"bump hunt: expected len(edges) = len(counts) + 1, found {e.size} and {n.size}"
        raise StatisticsInputError(msg)
    if np.any(np.diff(e) <= 0) or e[0] <= 0:
        msg = f"bump hunt: expected positive increasing m_jj edges, found {e}"
        raise StatisticsInputError(msg)
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        msg = "bump hunt: expected finite non-negative counts"
        raise StatisticsInputError(msg)
    return n, e


@dataclass(frozen=True)
class DijetFit:
    """Background-only dijet-function fit.

    Attributes:
        edges: m_jj bin edges (GeV).
        counts: observed counts per bin.
        expected: fitted expected counts per bin.
        params: p0 ... p(n-1) of :func:`dijet_function` (p0 in events per unit x).
        errors: their Hesse uncertainties, propagated from the fitted coordinates.
        sqrt_s: centre-of-mass energy (GeV) defining x.
        deviance: Poisson deviance at the minimum (chi2-like goodness of fit).
        ndf: bins minus fitted parameters.
        valid: Minuit's verdict on the minimum.
    """

    edges: NDArray[np.float64]
    counts: NDArray[np.float64]
    expected: NDArray[np.float64]
    params: NDArray[np.float64]
    errors: NDArray[np.float64]
    sqrt_s: float
    deviance: float
    ndf: int
    valid: bool
    # the fit's internal coordinates, reused as the start and the mu = 0 point of S+B fits
    _model: Any = field(default=None, repr=False, compare=False)
    _values: Any = field(default=None, repr=False, compare=False)

    @property
    def p_value(self) -> float:
        """Goodness of fit: chi2 survival probability of the deviance."""
        return float(_special.chdtrc(self.ndf, self.deviance)) if self.ndf > 0 else np.nan

    @property
    def pulls(self) -> NDArray[np.float64]:
        """(observed - expected) / sqrt(expected) per bin."""
        return (self.counts - self.expected) / np.sqrt(self.expected)

    def density(self, mjj: ArrayLike) -> NDArray[np.float64]:
        """Fitted events per GeV at ``mjj`` (GeV)."""
        m = np.asarray(mjj, dtype=np.float64)
        if self._model is None:
            return dijet_function(m / self.sqrt_s, *self.params) / self.sqrt_s
        # from the fit's normalisation in log space: p0 alone can be outside the float range
        # when the shape parameters are large (see _shape_integrals)
        integ, log_scale = _shape_integrals(self._model.xe, self.params[1:])
        norm = float(self._values[0])
        return norm * np.exp(_log_shape(m / self.sqrt_s, self.params[1:]) - log_scale) / (
            integ.sum() * self.sqrt_s)


@dataclass(frozen=True)
class SignalFit:
    """Signal + background fit.

    Attributes:
        mu: fitted signal strength (unbounded, may be negative).
        mu_err: its Hesse uncertainty (profiled over the background parameters).
        q0: profile likelihood ratio test statistic for mu = 0.
        significance: local significance, sqrt(q0) if mu >= 0 else 0.
        signal: expected signal per bin at mu = 1.
        background_expected: fitted background per bin in the S+B fit.
        background_only: the background-only fit (mu = 0).
        deviance: Poisson deviance of the S+B fit.
        valid: Minuit's verdict on the S+B minimum.
    """

    mu: float
    mu_err: float
    q0: float
    significance: float
    signal: NDArray[np.float64]
    background_expected: NDArray[np.float64]
    background_only: DijetFit
    deviance: float
    valid: bool

    @property
    def edges(self) -> NDArray[np.float64]:
        """m_jj bin edges."""
        return self.background_only.edges

    @property
    def counts(self) -> NDArray[np.float64]:
        """Observed counts."""
        return self.background_only.counts

    @property
    def expected(self) -> NDArray[np.float64]:
        """Fitted S+B expectation per bin."""
        return self.background_expected + self.mu * self.signal

    @property
    def pulls(self) -> NDArray[np.float64]:
        """(observed - S+B expected) / sqrt(expected) per bin."""
        return (self.counts - self.expected) / np.sqrt(self.expected)

    @property
    def signed_significance(self) -> float:
        """sign(mu) sqrt(q0): negative for a deficit."""
        return float(np.sign(self.mu) * np.sqrt(max(self.q0, 0.0)))


def _start_values(
    n: NDArray, xe: NDArray, n_params: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shape parameters p1..p(n-1) and their covariance from a linear fit of ln(density).

    ln f = ln p0 + p1 ln(1 - x) - p2 ln x - p3 ln^2 x - p4 ln^3 x is linear in the
    parameters, so this needs no minimiser and lands close to the likelihood minimum. Its
    covariance (Poisson weights, sigma(ln n) = 1/sqrt(n)) gives the linear map the likelihood
    fit runs in: p1..p4 are correlated at the 0.99 level, which leaves Migrad with an invalid
    minimum, while the whitened coordinates are nearly uncorrelated with unit scale.
    """
    xc = 0.5 * (xe[1:] + xe[:-1])
    ok = n > 0
    if np.count_nonzero(ok) < n_params + 1:
        msg = (
            f"bump hunt: expected at least {n_params + 1} non-empty bins for a "
            f"{n_params}-parameter fit, found {np.count_nonzero(ok)}"
        )
        raise StatisticsInputError(msg)
    dens = n[ok] / np.diff(xe)[ok]
    lx = np.log(xc[ok])
    cols = [np.ones_like(lx), np.log1p(-xc[ok]), -lx, -(lx**2), -(lx**3)][:n_params]
    design = np.stack(cols, axis=1) * np.sqrt(n[ok])[:, None]
    coef, *_ = np.linalg.lstsq(design, np.log(dens) * np.sqrt(n[ok]), rcond=None)
    cov = np.linalg.pinv(design.T @ design)
    return coef[1:], cov[1:, 1:]


def _whitening(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """A square root L of ``cov`` (L L^T = cov) that exists when cov is singular.

    Over a narrow x range the 5-parameter terms are so collinear that the start covariance
    has a condition number beyond double precision and a Cholesky factorisation fails (seen
    with 160k events in 3.0-4.4 TeV); the symmetric square root from the eigen-decomposition,
    with eigenvalues floored at 1e-14 of the largest, is a well-defined map for any cov.
    """
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    lam = np.maximum(lam, 1e-14 * max(float(lam.max()), np.finfo(float).tiny))
    return vec * np.sqrt(lam)


class _Model:
    """Expected counts per bin: norm * normalised shape integrals (+ mu * signal).

    The shape parameters are ``shape0 + chol @ z`` with Minuit fitting ``z`` (whitened
    coordinates, see :func:`_start_values`). Called by iminuit as a scaled CDF at the edges.
    """

    def __init__(self, xe: NDArray, shape0: NDArray, chol: NDArray, signal: NDArray | None):
        self.xe, self.shape0, self.chol, self.signal = xe, shape0, chol, signal

    def shape(self, z: NDArray) -> NDArray[np.float64]:
        return self.shape0 + self.chol @ z

    def split(self, par: NDArray) -> tuple[float, float, NDArray]:
        """(mu, norm, z) from Minuit's parameter vector."""
        if self.signal is None:
            return 0.0, float(par[0]), np.asarray(par[1:])
        return float(par[0]), float(par[1]), np.asarray(par[2:])

    def background(self, norm: float, z: NDArray) -> NDArray[np.float64]:
        integ, _ = _shape_integrals(self.xe, self.shape(z))
        return norm * integ / integ.sum()

    def bins(self, par: NDArray) -> NDArray[np.float64]:
        mu, norm, z = self.split(par)
        out = self.background(norm, z)
        return out if self.signal is None else out + mu * self.signal

    def __call__(self, xe: NDArray, *par: float) -> NDArray[np.float64]:
        return np.concatenate([[0.0], np.cumsum(self.bins(np.asarray(par)))])


def _minimise(n: NDArray, model: _Model, start: list[float], names: list[str]) -> Any:
    iminuit = require("iminuit", purpose="bump-hunt fits")
    cost_mod = require("iminuit.cost", purpose="bump-hunt fits")
    cost = cost_mod.ExtendedBinnedNLL(n, model.xe, model, name=names)
    m = iminuit.Minuit(cost, *start, name=names)
    m.limits["norm"] = (0.0, None)
    m.errors["norm"] = max(np.sqrt(n.sum()), 1.0)
    for name in names:
        if name.startswith("z"):
            m.errors[name] = 1.0  # whitened: unit scale by construction
    if model.signal is not None:
        # initial step of the order of mu's error: sqrt(background under the signal) / S
        s = model.signal / model.signal.sum()
        m.errors["mu"] = max(float(np.sqrt(n @ s)) / float(model.signal @ s), 1e-3)
    m.migrad()
    if not m.valid:  # a second pass from where the first stopped usually converges
        m.migrad()
    if not m.valid:  # the simplex does not need a good gradient to get near the minimum
        m.simplex()
        m.migrad()
    m.hesse()
    return m


def fit_dijet_background(
    counts: Any,
    edges: ArrayLike | None = None,
    *,
    sqrt_s: float = 13000.0,
    n_params: NParams = 4,
) -> DijetFit:
    """Fit the dijet function to an m_jj spectrum (binned Poisson likelihood).

    Args:
        counts: counts per m_jj bin, or a 1-d ``hist.Hist`` (then ``edges`` is not needed).
        edges: m_jj bin edges in GeV.
        sqrt_s: centre-of-mass energy in GeV (x = m_jj / sqrt_s).
        n_params: 3, 4 or 5 parameters of :func:`dijet_function`.

    Returns:
        :class:`DijetFit`.
    """
    if n_params not in (3, 4, 5):
        msg = f"fit_dijet_background: expected n_params in (3, 4, 5), found {n_params}"
        raise StatisticsInputError(msg)
    n, e = _as_counts_edges(counts, edges)
    xe = e / sqrt_s
    if xe[-1] >= 1:
        msg = f"bump hunt: expected m_jj edges below sqrt_s={sqrt_s}, found up to {e[-1]}"
        raise StatisticsInputError(msg)
    shape0, cov = _start_values(n, xe, n_params)
    model = _Model(xe, shape0, _whitening(cov), None)
    names = ["norm"] + [f"z{i}" for i in range(1, n_params)]
    m = _minimise(n, model, [float(n.sum())] + [0.0] * (n_params - 1), names)
    vals = np.asarray(m.values)
    _, norm, z = model.split(vals)

    def physical(v: NDArray) -> NDArray[np.float64]:
        sh = model.shape(v[1:])
        integ, log_scale = _shape_integrals(xe, sh)
        # p0 = norm / integral, formed in log space; it is 0 or inf (not NaN) only when the
        # shape parameters are so large that p0 itself is outside the float range
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            p0 = np.exp(np.log(v[0]) - np.log(integ.sum()) - log_scale)
        return np.concatenate([[p0], sh])

    # p0 = norm / integral(shape) depends on every fitted parameter: propagate the full
    # covariance with a central-difference Jacobian (steps of 1e-3 of each error)
    params = physical(vals)
    if m.covariance is None:  # Hesse failed: say so with NaN rather than invent errors
        errors = np.full(params.size, np.nan)
    else:
        cov_v = np.asarray(m.covariance)
        steps = 1e-3 * np.sqrt(np.diag(cov_v))
        with np.errstate(invalid="ignore"):  # p0 outside the float range: NaN error, said so
            jac = np.stack(
                [(physical(vals + dv) - physical(vals - dv)) / (2 * h)
                 for h, dv in zip(steps, np.diag(steps), strict=True)],
                axis=1,
            )
        with np.errstate(over="ignore", invalid="ignore"):
            errors = np.sqrt(np.diag(jac @ cov_v @ jac.T))
    fit = DijetFit(
        edges=e,
        counts=n,
        expected=model.background(norm, z),
        params=params,
        errors=errors,
        sqrt_s=sqrt_s,
        deviance=float(m.fval),
        ndf=int(n.size - m.nfit),
        valid=bool(m.valid),
        _model=model,
        _values=vals,
    )
    return fit


def gaussian_signal(
    edges: ArrayLike, *, mass: float, width: float, norm: float = 1.0
) -> NDArray[np.float64]:
    """Expected signal per bin for a Gaussian resonance of ``norm`` events in all.

    Args:
        edges: m_jj bin edges (GeV).
        mass: resonance mass (GeV).
        width: Gaussian sigma (GeV), the detector resolution for a narrow resonance.
        norm: total number of signal events (over the whole real line).

    Returns:
        ``norm * (Phi((e_i+1 - mass)/width) - Phi((e_i - mass)/width))`` per bin.
    """
    if not width > 0:
        msg = f"gaussian_signal: expected width > 0, found {width}"
        raise StatisticsInputError(msg)
    cdf = _special.ndtr((np.asarray(edges, dtype=np.float64) - mass) / width)
    return norm * np.diff(cdf)


def fit_signal_plus_background(
    counts: Any,
    edges: ArrayLike | None = None,
    *,
    signal: ArrayLike | Callable[[NDArray[np.float64]], ArrayLike] | None = None,
    mass: float | None = None,
    width: float | None = None,
    sqrt_s: float = 13000.0,
    n_params: NParams = 4,
    background: DijetFit | None = None,
) -> SignalFit:
    """Fit mu * S + dijet-function background; signal strength and local significance.

    Args:
        counts: counts per m_jj bin, or a 1-d ``hist.Hist``.
        edges: m_jj bin edges in GeV (arrays only).
        signal: expected signal per bin at mu = 1 (e.g. a signal MC histogram's values), or
            a callable taking the edges and returning it. If ``None``, a Gaussian of one
            event in all with ``mass`` and ``width`` (then mu is the fitted number of
            signal events).
        mass: Gaussian signal mass (GeV), when ``signal`` is ``None``.
        width: Gaussian signal width (GeV), when ``signal`` is ``None``.
        sqrt_s: centre-of-mass energy in GeV.
        n_params: parameters of the dijet function (3, 4 or 5).
        background: a background-only fit of the same spectrum, reused as the mu = 0 fit
            (it is computed if not given).

    Returns:
        :class:`SignalFit` with mu, its Hesse uncertainty, q0 and the local significance.
    """
    n, e = _as_counts_edges(counts, edges)
    if signal is None:
        if mass is None or width is None:
            msg = "fit_signal_plus_background: expected signal=, or mass= and width= for a Gaussian"
            raise StatisticsInputError(msg)
        sig = gaussian_signal(e, mass=mass, width=width)
    elif callable(signal):
        sig = np.asarray(signal(e), dtype=np.float64)
    else:
        sig = np.asarray(signal, dtype=np.float64).ravel()
    if sig.shape != n.shape:
        msg = f"fit_signal_plus_background: expected {n.size} signal bins, found {sig.size}"
        raise StatisticsInputError(msg)
    if not sig.sum() > 0:
        msg = (
            "fit_signal_plus_background: the signal template has no events inside the fit "
            f"range [{e[0]}, {e[-1]}] GeV"
        )
        raise StatisticsInputError(msg)
    if background is None:
        background = fit_dijet_background(n, e, sqrt_s=sqrt_s, n_params=n_params)
    elif (
        background.params.size != n_params
        or background._model is None
        or not np.array_equal(background.counts, n)
    ):
        msg = (
            "fit_signal_plus_background: background= must be fit_dijet_background's result "
            f"for the same counts with n_params={n_params}, found one with "
            f"{background.params.size} parameters"
            + ("" if np.array_equal(background.counts, n) else " on different counts")
        )
        raise StatisticsInputError(msg)
    bmodel: _Model = background._model
    model = _Model(bmodel.xe, bmodel.shape0, bmodel.chol, sig)
    names = ["mu", "norm"] + [f"z{i}" for i in range(1, n_params)]
    m = _minimise(n, model, [0.0, *background._values], names)
    mu = float(m.values["mu"])
    fval = float(m.fval)
    # the background-only fit is the mu = 0 conditional fit; it can only be worse
    q0 = max(background.deviance - fval, 0.0)
    _, norm, z = model.split(np.asarray(m.values))
    return SignalFit(
        mu=mu,
        mu_err=float(m.errors["mu"]),
        q0=q0,
        significance=float(np.sqrt(q0)) if mu >= 0 else 0.0,
        signal=sig,
        background_expected=model.background(norm, z),
        background_only=background,
        deviance=fval,
        valid=bool(m.valid),
    )


@dataclass(frozen=True)
class MassScan:
    """Signal + background fits at a series of mass hypotheses.

    Attributes:
        masses: the hypothesised resonance masses (GeV).
        widths: the Gaussian widths used (GeV).
        mu: fitted number of signal events at each mass.
        mu_err: their uncertainties.
        significance: local significance at each mass (0 where mu < 0).
    """

    masses: NDArray[np.float64]
    widths: NDArray[np.float64]
    mu: NDArray[np.float64]
    mu_err: NDArray[np.float64]
    significance: NDArray[np.float64]

    @property
    def best(self) -> int:
        """Index of the most significant mass hypothesis."""
        return int(np.argmax(self.significance))


def scan_signal_mass(
    counts: Any,
    edges: ArrayLike | None = None,
    *,
    masses: ArrayLike,
    relative_width: float = 0.07,
    sqrt_s: float = 13000.0,
    n_params: NParams = 4,
) -> MassScan:
    """Local significance of a Gaussian resonance at each of ``masses`` (a bump hunt scan).

    The background-only fit is done once and shared; each mass gets its own S+B fit with a
    Gaussian of width ``relative_width * mass`` (dijet mass resolution is 5-10% at the LHC).
    The largest local significance over the scan is not a global one: the look-elsewhere
    effect (Gross and Vitells, arXiv:1005.1891) must be accounted for separately.

    Args:
        counts: counts per m_jj bin, or a 1-d ``hist.Hist``.
        edges: m_jj bin edges in GeV (arrays only).
        masses: resonance masses to test (GeV).
        relative_width: Gaussian sigma / mass.
        sqrt_s: centre-of-mass energy in GeV.
        n_params: parameters of the dijet function.

    Returns:
        :class:`MassScan`.
    """
    n, e = _as_counts_edges(counts, edges)
    bkg = fit_dijet_background(n, e, sqrt_s=sqrt_s, n_params=n_params)
    m = np.asarray(masses, dtype=np.float64).ravel()
    if not relative_width > 0:
        msg = f"scan_signal_mass: expected relative_width > 0, found {relative_width}"
        raise StatisticsInputError(msg)
    widths = relative_width * m
    fits = [  # one fit per hypothesis: a handful of masses, each a full minimisation
        fit_signal_plus_background(n, e, mass=mi, width=wi, sqrt_s=sqrt_s, n_params=n_params,
                                   background=bkg)
        for mi, wi in zip(m, widths, strict=True)
    ]
    return MassScan(
        masses=m,
        widths=widths,
        mu=np.array([f.mu for f in fits]),
        mu_err=np.array([f.mu_err for f in fits]),
        significance=np.array([f.significance for f in fits]),
    )
