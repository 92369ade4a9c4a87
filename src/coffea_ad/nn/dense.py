"""Dense autoencoder on per-jet substructure (the SVJ anomaly-detection baseline).

Architecture of Canelli et al., "Autoencoders for semivisible jet detection", JHEP 02 (2022)
074, arXiv:2112.02864: standardized jet features -> (10, 10) -> 6 latent -> (10, 10) -> features,
ELU activations, mean-absolute-error reconstruction loss, which is the per-jet anomaly score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from coffea_ad._optional import require
from coffea_ad.nn.losses import mae, mse
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["DenseAutoencoder"]

Activation = Literal["elu", "relu", "leaky_relu", "selu", "gelu", "tanh"]


class DenseAutoencoder(nn.Module):
    """Symmetric dense autoencoder with in-graph standardization.

    ``forward(features)`` takes raw features ``[batch, n_features]`` and returns
    ``(loss, reconstruction)``: the per-row reconstruction loss ``[batch]`` computed on
    standardized features (the anomaly score) and the reconstruction in raw units.

    Args:
        n_features: number of input features.
        hidden: widths of the encoder layers (the decoder mirrors them).
        latent: bottleneck width.
        activation: hidden-layer activation.
        loss: ``"mae"`` (the SVJ AE) or ``"mse"``.
        centre, scale: standardization (see :func:`coffea_ad.nn.scaling.standardization`).
    """

    output_names = ("loss", "reconstruction")

    def __init__(self, n_features: int, *, hidden: Sequence[int] = (10, 10), latent: int = 6,
                 activation: Activation = "elu", loss: Literal["mae", "mse"] = "mae",
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None):
        super().__init__()
        if loss not in ("mae", "mse"):
            from coffea_ad.errors import UnknownNameError

            raise UnknownNameError("loss", loss, ["mae", "mse"])
        self.n_features = n_features
        self.loss_name = loss
        self.scaler = Standardize(n_features, centre, scale)
        self.encoder = make_mlp([n_features, *hidden, latent], activation, last_activation=True)
        self.decoder = make_mlp([latent, *reversed(hidden), n_features], activation)

    def reconstruct(self, x_std):
        """Standardized input -> standardized reconstruction."""
        return self.decoder(self.encoder(x_std))

    def forward(self, features):
        x = self.scaler(features)
        r = self.reconstruct(x)
        loss = mae(x, r) if self.loss_name == "mae" else mse(x, r)
        return loss, self.scaler.inverse(r)

    def training_loss(self, features):
        """Per-row loss ``[batch]`` that :func:`coffea_ad.nn.fit.fit` minimizes."""
        return self.forward(features)[0]
