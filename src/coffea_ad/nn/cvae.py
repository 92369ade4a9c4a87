"""Conditional VAE conditioned on m_jj, for resonant anomaly detection (LHC-Olympics style).

Encoder ``q(z | x, c)`` and decoder ``p(x | z, c)`` both see the condition ``c`` (Sohn, Lee &
Yan, NeurIPS 2015). Trained on the m_jj sidebands, the decoder interpolates into the signal
region: sampling ``z ~ N(0, 1)`` with ``c`` drawn from the signal region's m_jj gives a
background template there; a classifier of data vs template then finds the anomaly
(the CATHODE strategy, Hallin et al., arXiv:2109.00546, with a cVAE as the generative model).
The condition is ``log(m_jj)`` standardized in the graph (``log_condition``).
"""

from __future__ import annotations

from collections.abc import Sequence

from coffea_ad._optional import require
from coffea_ad.nn.losses import kl_divergence, mse
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["CVAESampler", "ConditionalVAE"]


class ConditionalVAE(nn.Module):
    """Dense conditional VAE with in-graph standardization of features and condition.

    ``forward(features, condition)`` -> ``(score, reconstruction)``: per-row ``MSE + beta KL``
    (eval: latent = posterior mean) and the reconstruction in raw units.

    Args:
        n_features: feature width.
        n_conditions: condition width (1 for m_jj).
        hidden, latent, beta, activation: architecture and KL weight.
        log_condition: take ``log`` of the condition before standardizing it (m_jj spans
            a factor of a few; its log is closer to uniform).
        centre, scale: feature standardization.
        cond_centre, cond_scale: standardization of the (log) condition.
    """

    output_names = ("score", "reconstruction")

    def __init__(self, n_features: int, n_conditions: int = 1, *,
                 hidden: Sequence[int] = (64, 64), latent: int = 4, beta: float = 1.0,
                 activation: str = "elu", log_condition: bool = True,
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None,
                 cond_centre: Sequence[float] | None = None,
                 cond_scale: Sequence[float] | None = None):
        super().__init__()
        self.n_features, self.n_conditions, self.latent = n_features, n_conditions, latent
        self.beta, self.log_condition = beta, log_condition
        self.scaler = Standardize(n_features, centre, scale)
        self.cond_scaler = Standardize(n_conditions, cond_centre, cond_scale)
        self.encoder = make_mlp([n_features + n_conditions, *hidden], activation,
                                last_activation=True)
        self.to_mean = nn.Linear(hidden[-1], latent)
        self.to_logvar = nn.Linear(hidden[-1], latent)
        self.decoder = make_mlp([latent + n_conditions, *reversed(hidden), n_features], activation)
        # spread of p(x | z, c) around the decoder mean, per standardized feature; 0 until
        # calibrate_noise() is called after training
        self.register_buffer("noise_scale", torch.zeros(n_features))

    def condition(self, c):
        """Raw condition -> the standardized (log) condition the networks see."""
        c = c.reshape(c.shape[0], self.n_conditions)
        return self.cond_scaler(torch.log(c) if self.log_condition else c)

    def decode(self, z, c_std):
        return self.decoder(torch.cat([z, c_std], dim=1))

    def terms(self, features, condition):
        x = self.scaler(features)
        c = self.condition(condition)
        h = self.encoder(torch.cat([x, c], dim=1))
        mu, logvar = self.to_mean(h), self.to_logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        r = self.decode(z, c)
        return r, mse(x, r), kl_divergence(mu, logvar)

    def forward(self, features, condition):
        r, reco, kl = self.terms(features, condition)
        return reco + self.beta * kl, self.scaler.inverse(r)

    def training_loss(self, features, condition):
        _, reco, kl = self.terms(features, condition)
        return reco + self.beta * kl

    def calibrate_noise(self, features, condition):
        """Set :attr:`noise_scale` to the per-feature RMS residual of the reconstruction
        (latent = posterior mean) on ``features`` (standardized units).

        The MSE loss is the Gaussian likelihood of ``p(x | z, c)`` with a fixed variance; the
        decoder gives only its mean. Sampling the mean alone yields a template narrower than
        the data, which a data-vs-template classifier separates at once. Returns the scales.
        """
        self.eval()
        with torch.no_grad():
            f = torch.as_tensor(features, dtype=torch.float32)
            c = torch.as_tensor(condition, dtype=torch.float32)
            x = self.scaler(f)
            cs = self.condition(c)
            h = self.encoder(torch.cat([x, cs], dim=1))
            r = self.decode(self.to_mean(h), cs)
            self.noise_scale.copy_((x - r).square().mean(dim=0).sqrt())
        return self.noise_scale.clone()

    def sample(self, condition, *, generator=None):
        """Draw one feature vector per condition row from ``p(x | z, c)``: ``z ~ N(0, 1)``,
        decoder mean plus Gaussian noise of :attr:`noise_scale`.

        Returns raw-unit features ``[len(condition), n_features]``.
        """
        self.eval()
        with torch.no_grad():
            c = torch.as_tensor(condition, dtype=torch.float32)
            c = c.reshape(c.shape[0], self.n_conditions)
            z = torch.randn((c.shape[0], self.latent), generator=generator)
            eps = torch.randn((c.shape[0], self.n_features), generator=generator)
            mean = self.decode(z, self.condition(c))
            return self.scaler.inverse(mean + eps * self.noise_scale)


class CVAESampler(nn.Module):
    """The cVAE decoder as its own ONNX graph: ``forward(noise, condition) -> features``.

    ``noise`` is ``[batch, latent + n_features]`` standard normal drawn by the caller (ONNX
    RandomNormal would tie the randomness to the runtime's seed handling): the first
    ``latent`` columns are ``z``, the rest the observation noise scaled by ``noise_scale``.
    """

    output_names = ("features",)

    def __init__(self, cvae: ConditionalVAE):
        super().__init__()
        self.cvae = cvae

    def forward(self, noise, condition):
        c = self.cvae.condition(condition)
        z, eps = noise[:, : self.cvae.latent], noise[:, self.cvae.latent:]
        mean = self.cvae.decode(z, c)
        return self.cvae.scaler.inverse(mean + eps * self.cvae.noise_scale)
