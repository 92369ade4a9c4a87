"""CMS-style plots (mplhep). Matplotlib is imported lazily: ``pip install 'coffea-ad[plot]'``."""

from __future__ import annotations

from coffea_ad.plotting.distributions import plot_mass_by_category, plot_roc, plot_score_distributions

__all__ = ["plot_mass_by_category", "plot_roc", "plot_score_distributions"]
