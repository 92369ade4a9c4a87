"""Torch models, losses, training loop and ONNX export of coffea-ad (extra ``train``).

One concept per module: :mod:`~coffea_ad.nn.dense` (dense AE), :mod:`~coffea_ad.nn.vae`
(VAE, VAE + classifier), :mod:`~coffea_ad.nn.particle_vae` (Chamfer VAE on constituents),
:mod:`~coffea_ad.nn.graph_ae` (graph AE), :mod:`~coffea_ad.nn.cvae` (conditional VAE),
:mod:`~coffea_ad.nn.quantile` (quantile regression), :mod:`~coffea_ad.nn.baselines` (PCA,
boosted trees), :mod:`~coffea_ad.nn.losses`, :mod:`~coffea_ad.nn.fit`,
:mod:`~coffea_ad.nn.export`, :mod:`~coffea_ad.nn.data`. Every model standardizes its inputs
inside the graph and exposes ``training_loss(*inputs) -> [batch]`` and ``output_names``.
"""

from __future__ import annotations

from coffea_ad.nn.baselines import PCAReconstruction, fit_boosted_trees, fit_pca
from coffea_ad.nn.cvae import ConditionalVAE, CVAESampler
from coffea_ad.nn.dense import DenseAutoencoder
from coffea_ad.nn.export import export_onnx, verify_onnx, write_model_card
from coffea_ad.nn.fit import History, fit, predict
from coffea_ad.nn.graph_ae import GraphAutoencoder
from coffea_ad.nn.losses import chamfer, distance_correlation, kl_divergence, mae, mse, pinball
from coffea_ad.nn.particle_vae import ParticleVAE
from coffea_ad.nn.quantile import QuantileRegressor
from coffea_ad.nn.vae import VAE, VAEClassifier

__all__ = [
    "VAE",
    "CVAESampler",
    "ConditionalVAE",
    "DenseAutoencoder",
    "GraphAutoencoder",
    "History",
    "PCAReconstruction",
    "ParticleVAE",
    "QuantileRegressor",
    "VAEClassifier",
    "chamfer",
    "distance_correlation",
    "export_onnx",
    "fit",
    "fit_boosted_trees",
    "fit_pca",
    "kl_divergence",
    "mae",
    "mse",
    "pinball",
    "predict",
    "verify_onnx",
    "write_model_card",
]
