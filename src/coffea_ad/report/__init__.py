"""Reports: markdown pages with the statistics and plots of a run.

Sits above :mod:`coffea_ad.stats` (the numbers) and :mod:`coffea_ad.plotting` (the figures),
which never import it:

- :mod:`~coffea_ad.report.page`: :func:`write_report`, one page from one event histogram
  (yields, score performance, ABCD closure, bump hunt, plots);
- :mod:`~coffea_ad.report.classifier`: the signal-region data-vs-template classifier;
- :mod:`~coffea_ad.report.run`: :func:`write_run_report`, the page of a whole
  ``coffea-ad run`` output (``coffea-ad report``);
- :mod:`~coffea_ad.report.config`: the run configuration at the top of that page;
- :mod:`~coffea_ad.report.html`: the page as one self-contained HTML file.
"""

from __future__ import annotations

from coffea_ad.report.classifier import fit_data_vs_template, sr_classifier
from coffea_ad.report.html import write_html
from coffea_ad.report.page import ReportNumbers, write_report
from coffea_ad.report.run import dataset_roles, event_histograms, write_run_report

__all__ = [
    "ReportNumbers",
    "dataset_roles",
    "event_histograms",
    "fit_data_vs_template",
    "sr_classifier",
    "write_html",
    "write_report",
    "write_run_report",
]
