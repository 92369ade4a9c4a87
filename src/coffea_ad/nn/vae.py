"""Variational autoencoders on dense inputs: the VAE and the VAE + DNN classifier.

VAE (Kingma & Welling, arXiv:1312.6114) with loss ``MSE + beta * KL``; the anomaly score is
the reconstruction term, the KL term or their sum (``score``). The VAE + DNN of the VBS
same-sign WW EFT workflow (see ``DESIGN.md``: a classifier on the VAE's latent mean and
losses, trained with ``MSE + KL + BCE``) adds a supervised head that separates SM from BSM.

In eval mode (ONNX export) the latent sample is the posterior mean, so the exported graph is
deterministic; training samples with the reparametrization trick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from coffea_ad._optional import require
from coffea_ad.nn.losses import kl_divergence, mse
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["VAE", "VAEClassifier"]

Score = Literal["reconstruction", "kl", "combined"]
Activation = Literal["elu", "relu", "leaky_relu", "selu", "gelu", "tanh"]


class VAE(nn.Module):
    """Dense VAE with in-graph standardization.

    ``forward(features)`` -> ``(score, reconstruction, latent_mean, latent_logvar)`` with
    ``score`` [batch] per ``score`` option, reconstruction in raw units.

    Args:
        n_features: input width.
        hidden: encoder widths (decoder mirrors them).
        latent: latent dimension.
        beta: weight of the KL term in the training loss (beta-VAE, Higgins et al., ICLR 2017).
        score: ``"reconstruction"`` (MSE), ``"kl"``, or ``"combined"`` (MSE + beta KL).
        activation: hidden activation.
        centre, scale: input standardization.
    """

    output_names = ("score", "reconstruction", "latent_mean", "latent_logvar")

    def __init__(self, n_features: int, *, hidden: Sequence[int] = (32, 16), latent: int = 4,
                 beta: float = 1.0, score: Score = "combined", activation: Activation = "elu",
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None):
        super().__init__()
        if score not in ("reconstruction", "kl", "combined"):
            from coffea_ad.errors import UnknownNameError

            raise UnknownNameError("VAE score", score, ["reconstruction", "kl", "combined"])
        self.n_features, self.latent, self.beta, self.score = n_features, latent, beta, score
        self.scaler = Standardize(n_features, centre, scale)
        self.encoder = make_mlp([n_features, *hidden], activation, last_activation=True)
        self.to_mean = nn.Linear(hidden[-1], latent)
        self.to_logvar = nn.Linear(hidden[-1], latent)
        self.decoder = make_mlp([latent, *reversed(hidden), n_features], activation)

    def encode(self, x_std):
        h = self.encoder(x_std)
        return self.to_mean(h), self.to_logvar(h)

    def terms(self, features):
        """Standardized input, reconstruction, mean, logvar, per-row MSE and KL."""
        x = self.scaler(features)
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        r = self.decoder(z)
        return x, r, mu, logvar, mse(x, r), kl_divergence(mu, logvar)

    def combine(self, reco, kl):
        if self.score == "reconstruction":
            return reco
        if self.score == "kl":
            return kl
        return reco + self.beta * kl

    def forward(self, features):
        _, r, mu, logvar, reco, kl = self.terms(features)
        return self.combine(reco, kl), self.scaler.inverse(r), mu, logvar

    def training_loss(self, features):
        """Per-row ``MSE + beta * KL``."""
        _, _, _, _, reco, kl = self.terms(features)
        return reco + self.beta * kl


class VAEClassifier(nn.Module):
    """VAE plus a DNN that classifies BSM vs SM from the VAE's outputs.

    The classifier sees the standardized inputs, the latent mean and the two per-row VAE
    losses. ``forward(features)`` -> ``(probability, vae_score, reconstruction,
    latent_mean)``; ``probability`` (the BSM probability) is the score.
    Training loss per row: ``(MSE + beta KL) * [label == 0] + alpha * BCE``: the VAE part
    learns the SM (background) only, the head learns the separation.

    Args:
        n_features: input width.
        hidden, latent, beta, activation, centre, scale: as for :class:`VAE`.
        classifier: hidden widths of the DNN head.
        alpha: weight of the BCE term.
    """

    output_names = ("probability", "vae_score", "reconstruction", "latent_mean")

    def __init__(self, n_features: int, *, hidden: Sequence[int] = (32, 16), latent: int = 4,
                 beta: float = 1.0, classifier: Sequence[int] = (32, 32), alpha: float = 1.0,
                 activation: Activation = "elu", centre: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None):
        super().__init__()
        self.vae = VAE(n_features, hidden=hidden, latent=latent, beta=beta, score="combined",
                       activation=activation, centre=centre, scale=scale)
        self.alpha = alpha
        self.head = make_mlp([n_features + latent + 2, *classifier, 1], activation)

    def _parts(self, features):
        x, r, mu, _logvar, reco, kl = self.vae.terms(features)
        # log1p keeps the heavy-tailed losses in a range the head trains on
        h = torch.cat([x, mu, torch.log1p(reco).unsqueeze(1), torch.log1p(kl).unsqueeze(1)], 1)
        return self.head(h).squeeze(1), r, mu, reco, kl

    def forward(self, features):
        logit, r, mu, reco, kl = self._parts(features)
        return torch.sigmoid(logit), reco + self.vae.beta * kl, self.vae.scaler.inverse(r), mu

    def training_loss(self, features, label):
        logit, _, _, reco, kl = self._parts(features)
        label = label.to(logit.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits(logit, label, reduction="none")
        return (reco + self.vae.beta * kl) * (1.0 - label) + self.alpha * bce
