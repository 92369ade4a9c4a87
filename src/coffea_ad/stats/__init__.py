"""Statistics that turn anomaly scores into a result.

One concept per module:

- :mod:`~coffea_ad.stats.roc`: ROC, AUC, SIC = TPR/sqrt(FPR), working points;
- :mod:`~coffea_ad.stats.significance`: sigma = |BSM - SM|/sqrt(SM) across cuts;
- :mod:`~coffea_ad.stats.abcd`: ABCD prediction per mass bin and its closure test;
- :mod:`~coffea_ad.stats.bumphunt`: dijet-function fits, S+B fit, signal strength and local
  significance;
- :mod:`~coffea_ad.stats.quantile`: score thresholds at background quantiles versus m_jj,
  decorrelated categories, correctionlib export;
- :mod:`~coffea_ad.stats.decorrelation`: distance correlation (DisCo check), 1/JSD;

Convention everywhere: a higher score is more anomalous; an event passes ``score >= cut``.
"""

from __future__ import annotations

from coffea_ad.stats.abcd import (
    ABCDClosure,
    ABCDCounts,
    ABCDPrediction,
    abcd_closure,
    abcd_predict,
    abcd_regions,
)
from coffea_ad.stats.bumphunt import (
    DijetFit,
    MassScan,
    SignalFit,
    dijet_function,
    fit_dijet_background,
    fit_signal_plus_background,
    gaussian_signal,
    scan_signal_mass,
)
from coffea_ad.stats.decorrelation import (
    distance_correlation,
    distance_covariance_sq,
    inverse_jsd,
)
from coffea_ad.stats.quantile import (
    CorrectionlibThresholds,
    QuantileThresholds,
    category_shape_test,
    quantile_categories,
    quantile_thresholds,
    thresholds_from_correctionlib,
    thresholds_to_correctionlib,
    weighted_binned_quantiles,
)
from coffea_ad.stats.roc import (
    WorkingPoint,
    auc,
    binned_roc,
    histogram_score_bins,
    max_sic,
    roc_curve,
    sic_curve,
    working_point,
)
from coffea_ad.stats.significance import SignificanceScan, significance, significance_scan

__all__ = [
    "ABCDClosure",
    "ABCDCounts",
    "ABCDPrediction",
    "CorrectionlibThresholds",
    "DijetFit",
    "MassScan",
    "QuantileThresholds",
    "SignalFit",
    "SignificanceScan",
    "WorkingPoint",
    "abcd_closure",
    "abcd_predict",
    "abcd_regions",
    "auc",
    "binned_roc",
    "category_shape_test",
    "dijet_function",
    "distance_correlation",
    "distance_covariance_sq",
    "fit_dijet_background",
    "fit_signal_plus_background",
    "gaussian_signal",
    "histogram_score_bins",
    "inverse_jsd",
    "max_sic",
    "quantile_categories",
    "quantile_thresholds",
    "roc_curve",
    "scan_signal_mass",
    "sic_curve",
    "significance",
    "significance_scan",
    "thresholds_from_correctionlib",
    "thresholds_to_correctionlib",
    "weighted_binned_quantiles",
    "working_point",
]
