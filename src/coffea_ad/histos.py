"""Histogram builders: the hist objects the processors fill and the statistics read.

Axis names are a contract between processors, :mod:`coffea_ad.stats` and plotting:
``dataset`` (string category), ``category`` (integer: number of AE-tagged jets, or a quantile
category), ``score`` (anomaly score), ``mt`` / ``mjj`` (GeV), ``systematic`` (string category,
``"nominal"`` by default, ready for variations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import hist
import numpy as np

from coffea_ad.atomic import atomic_path

__all__ = [
    "DEFAULT_MT_EDGES",
    "jet_score_histogram",
    "score_mass_histogram",
    "write_root",
]

#: m_T binning (GeV) of the semivisible-jet searches' range, coarse enough for small samples.
DEFAULT_MT_EDGES: tuple[float, ...] = tuple(float(x) for x in np.arange(0.0, 6001.0, 100.0))


def _score_axis(*, name: str, label: str, bins: int, start: float, stop: float, log: bool) -> hist.axis.Regular:
    transform = hist.axis.transform.log if log else None
    return hist.axis.Regular(bins, start, stop, name=name, label=label, transform=transform)


def score_mass_histogram(
    *,
    mass: str = "mt",
    mass_label: str = r"$m_{T}$ [GeV]",
    mass_edges: Sequence[float] = DEFAULT_MT_EDGES,
    score_label: str = "AE loss",
    score_bins: int = 120,
    score_range: tuple[float, float] = (1e-3, 1e2),
    log_score: bool = True,
    categories: Sequence[int] = (0, 1, 2),
    category_label: str = "AE-tagged jets",
) -> hist.Hist:
    """Event histogram: ``dataset × systematic × category × score × mass``, weighted.

    Args:
        mass: name of the mass axis (``"mt"`` or ``"mjj"``).
        mass_edges: bin edges of the mass axis in GeV.
        score_bins, score_range, log_score: the score axis (log-spaced by default, because
            reconstruction losses span decades).
        categories: integer categories (number of tagged jets 0/1/2 by default).

    Returns:
        An empty :class:`hist.Hist` with ``Weight`` storage (sum of weights and of squares,
        for the statistical uncertainties of ABCD and fits).
    """
    return hist.Hist(
        hist.axis.StrCategory([], growth=True, name="dataset", label="Dataset"),
        hist.axis.StrCategory(["nominal"], growth=True, name="systematic", label="Systematic"),
        hist.axis.IntCategory(list(categories), name="category", label=category_label),
        _score_axis(name="score", label=score_label, bins=score_bins, start=score_range[0],
                    stop=score_range[1], log=log_score),
        hist.axis.Variable(list(mass_edges), name=mass, label=mass_label),
        storage=hist.storage.Weight(),
    )


def jet_score_histogram(
    *,
    score_label: str = "AE loss",
    score_bins: int = 400,
    score_range: tuple[float, float] = (1e-3, 1e2),
    log_score: bool = True,
) -> hist.Hist:
    """Jet histogram: ``dataset × score`` with fine score bins, for jet-level ROC/AUC."""
    return hist.Hist(
        hist.axis.StrCategory([], growth=True, name="dataset", label="Dataset"),
        _score_axis(name="score", label=score_label, bins=score_bins, start=score_range[0],
                    stop=score_range[1], log=log_score),
        storage=hist.storage.Weight(),
    )


def write_root(histograms: Mapping[str, hist.Hist], path: str | Path) -> Path:
    """Write histograms to a ROOT file (what CMS fitting tools read), one TH1/TH2 per slice.

    ROOT histograms have at most 3 axes and no string axes, so each histogram is sliced along
    its category axes (``dataset``, ``systematic``, ``category``) and written as
    ``NAME/dataset/systematic/category`` (the remaining 1D/2D histogram), e.g.
    ``events/qcd/nominal/cat1`` holding score × m_T.

    Returns:
        The path written.
    """
    import uproot

    path = Path(path)
    with atomic_path(path) as tmp, uproot.recreate(tmp) as fout:
        for name, h in histograms.items():
            for key, sub in _slices(h):
                fout["/".join([name, *key]) if key else name] = sub
    return path


def _slices(h: hist.Hist) -> list[tuple[list[str], hist.Hist]]:
    """Split ``h`` along its category axes into (key parts, histogram of the numeric axes)."""
    cat_axes = [ax for ax in h.axes if isinstance(ax, (hist.axis.StrCategory, hist.axis.IntCategory))]
    if not cat_axes:
        return [([], h)]
    out: list[tuple[list[str], hist.Hist]] = []
    first, rest = cat_axes[0], cat_axes[1:]
    for value in first:
        sub = h[{first.name: hist.loc(value)}]
        label = f"cat{value}" if isinstance(first, hist.axis.IntCategory) else str(value)
        for key, leaf in _slices(sub) if rest else [([], sub)]:
            out.append(([label, *key], leaf))
    return out
