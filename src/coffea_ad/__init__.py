"""coffea-ad: anomaly detection for coffea analyses.

Columnar model inputs from NanoAOD/PFNano (:mod:`coffea_ad.features`), ONNX Runtime scoring
with a model contract (:mod:`coffea_ad.inference`), torch models and their ONNX export
(:mod:`coffea_ad.nn`), generated samples (:mod:`coffea_ad.samples`), histograms
(:mod:`coffea_ad.histos`) and the statistics that turn them into a result
(:mod:`coffea_ad.stats`).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
