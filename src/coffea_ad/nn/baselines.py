"""Baselines that a new model has to beat: PCA reconstruction error and boosted trees.

- PCA (unsupervised, like the AE): fitted with scikit-learn on standardized background, then
  carried over into a torch module (its mean and components as buffers) so that it exports to
  ONNX and is scored exactly like the autoencoders. Score = squared distance of the
  standardized row from its projection on the leading ``n_components`` principal axes.
- Boosted trees (supervised, needs labelled signal): scikit-learn's
  ``HistGradientBoostingClassifier``. Exporting it to ONNX needs ``skl2onnx``, which is not a
  dependency of coffea-ad; it serves as a reference figure of merit in validation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError
from coffea_ad.nn.losses import mse
from coffea_ad.nn.scaling import Standardize, standardization

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["PCAReconstruction", "fit_boosted_trees", "fit_pca"]


class PCAReconstruction(nn.Module):
    """PCA reconstruction error as a torch module.

    ``forward(features)`` -> ``(loss, reconstruction)``: per-row mean squared error between
    the standardized row and its projection ``mean + (x - mean) V^T V``, and the projection in
    raw units.

    Args:
        centre, scale: input standardization.
        mean: PCA mean of the standardized inputs ``[n_features]``.
        components: principal axes ``[n_components, n_features]`` (rows orthonormal).
    """

    output_names = ("loss", "reconstruction")

    def __init__(self, centre: Sequence[float], scale: Sequence[float], mean: np.ndarray,
                 components: np.ndarray):
        super().__init__()
        components = np.asarray(components, np.float32)
        self.scaler = Standardize(components.shape[1], centre, scale)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("components", torch.as_tensor(components))

    def forward(self, features):
        x = self.scaler(features)
        z = (x - self.mean) @ self.components.T
        r = z @ self.components + self.mean
        return mse(x, r), self.scaler.inverse(r)


def fit_pca(x: np.ndarray, *, n_components: int, weights: np.ndarray | None = None,
            seed: int = 0) -> PCAReconstruction:
    """Standardize ``x`` (weighted), fit ``sklearn.decomposition.PCA`` and wrap it.

    Args:
        x: background rows ``[n, n_features]``.
        n_components: kept principal components (< n_features, else the error is 0).
        weights: row weights for the standardization (PCA itself is unweighted in sklearn).
        seed: ``random_state`` of the solver.

    Returns:
        :class:`PCAReconstruction` in eval mode.
    """
    sklearn_decomposition = require("sklearn.decomposition", purpose="the PCA baseline")
    if not 0 < n_components < x.shape[1]:
        raise InvalidArgumentError(f"fit_pca: expected 0 < n_components < {x.shape[1]} (features), found "
                         f"{n_components}")
    centre, scale = standardization(x, weights=weights)
    pca = sklearn_decomposition.PCA(n_components=n_components, random_state=seed)
    pca.fit((x - centre) / scale)
    return PCAReconstruction(centre, scale, pca.mean_, pca.components_).eval()


def fit_boosted_trees(background: np.ndarray, signal: np.ndarray, *,
                      background_weights: np.ndarray | None = None,
                      signal_weights: np.ndarray | None = None, seed: int = 0,
                      **options: Any):
    """Supervised reference: ``HistGradientBoostingClassifier`` of signal vs background.

    Classes are balanced by weight (each class sums to the same total). ``options`` go to the
    classifier (e.g. ``max_iter``, ``learning_rate``). Score rows with
    ``clf.predict_proba(x)[:, 1]``.

    Returns:
        The fitted classifier (not exportable to ONNX without ``skl2onnx``).
    """
    ensemble = require("sklearn.ensemble", purpose="the boosted-tree baseline")
    wb = np.ones(len(background)) if background_weights is None else np.asarray(
        background_weights, float)
    ws = np.ones(len(signal)) if signal_weights is None else np.asarray(signal_weights, float)
    wb = wb / wb.sum()
    ws = ws / ws.sum()
    x = np.concatenate([background, signal])
    y = np.r_[np.zeros(len(background)), np.ones(len(signal))]
    w = np.concatenate([wb, ws]) * len(x) / 2.0
    clf = ensemble.HistGradientBoostingClassifier(random_state=seed, **options)
    clf.fit(x, y, sample_weight=w)
    return clf
