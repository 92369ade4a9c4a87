"""CMS-style plots (mplhep). Matplotlib is imported lazily: ``pip install 'coffea-ad[plot]'``."""

from __future__ import annotations

from coffea_ad.plotting.distributions import (
    plot_mass_by_category,
    plot_roc,
    plot_score_distributions,
)
from coffea_ad.plotting.stats import (
    plot_abcd_closure,
    plot_bumphunt,
    plot_qr_thresholds,
    plot_roc_sic,
)

__all__ = [
    "plot_abcd_closure",
    "plot_bumphunt",
    "plot_mass_by_category",
    "plot_qr_thresholds",
    "plot_roc",
    "plot_roc_sic",
    "plot_score_distributions",
]
