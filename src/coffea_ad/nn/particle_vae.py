"""Particle-list VAE with the Chamfer reconstruction loss (model-agnostic dijet search).

Input: up to ``n_particles`` constituents per jet with features such as (Δη, Δφ, p_T
fraction) and a mask. The encoder is a deep set (Zaheer et al., arXiv:1703.06114: a per-particle
MLP, a masked mean, an MLP), so the encoding is permutation invariant; the decoder emits a fixed
number of particles and the loss compares the two sets with the Chamfer distance, which does
not need an ordering (the model-agnostic dijet search of DESIGN.md, CMS-EXO-22-026).
Score = Chamfer + beta KL (``score="combined"``) or Chamfer only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from coffea_ad._optional import require
from coffea_ad.nn.losses import chamfer, kl_divergence
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["ParticleVAE"]


class ParticleVAE(nn.Module):
    """Deep-set encoder, dense decoder, Chamfer + KL loss, masks for padded particles.

    ``forward(particles, mask)`` with ``particles [batch, n, F]`` raw and ``mask [batch, n]``
    (1 real, 0 padding) returns ``(score, chamfer, reconstruction, latent_mean)``; the
    reconstruction is ``[batch, n_out, F]`` in raw units.

    Args:
        n_features: features per particle.
        n_particles: padded length of the input.
        n_out: particles emitted by the decoder (default ``n_particles``).
        hidden: width of the per-particle and decoder MLPs.
        latent: latent dimension.
        beta: KL weight.
        score: ``"combined"`` (Chamfer + beta KL) or ``"chamfer"``.
        centre, scale: per-feature standardization (computed on real particles only).
    """

    output_names = ("score", "chamfer", "reconstruction", "latent_mean")

    def __init__(self, n_features: int = 3, n_particles: int = 50, *, n_out: int | None = None,
                 hidden: int = 64, latent: int = 8, beta: float = 0.1,
                 score: Literal["combined", "chamfer"] = "combined",
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None):
        super().__init__()
        self.n_features, self.n_particles = n_features, n_particles
        self.n_out = n_out or n_particles
        self.beta, self.score = beta, score
        self.scaler = Standardize(n_features, centre, scale)
        self.phi = make_mlp([n_features, hidden, hidden], "elu", last_activation=True)
        self.rho = make_mlp([hidden, hidden], "elu", last_activation=True)
        self.to_mean = nn.Linear(hidden, latent)
        self.to_logvar = nn.Linear(hidden, latent)
        self.decoder = make_mlp([latent, hidden, 2 * hidden, self.n_out * n_features], "elu")

    def terms(self, particles, mask):
        m = mask.to(particles.dtype)
        # padded rows to 0 after scaling; where(), not * mask, so NaN padding cannot leak
        x = torch.where(m.unsqueeze(-1) > 0, self.scaler(particles), torch.zeros_like(particles))
        h = self.phi(x) * m.unsqueeze(-1)
        pooled = h.sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        g = self.rho(pooled)
        mu, logvar = self.to_mean(g), self.to_logvar(g)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        r = self.decoder(z).reshape(-1, self.n_out, self.n_features)
        ch = chamfer(x, r, x_mask=m)
        return r, mu, ch, kl_divergence(mu, logvar)

    def forward(self, particles, mask):
        r, mu, ch, kl = self.terms(particles, mask)
        score = ch + self.beta * kl if self.score == "combined" else ch
        return score, ch, self.scaler.inverse(r), mu

    def training_loss(self, particles, mask):
        _, _, ch, kl = self.terms(particles, mask)
        return ch + self.beta * kl
