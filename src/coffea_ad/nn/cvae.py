"""Conditional VAE conditioned on m_jj, for resonant anomaly detection (LHC-Olympics style).

Encoder ``q(z | x, c)`` and decoder ``p(x | z, c)`` both see the condition ``c`` (Sohn, Lee &
Yan, NeurIPS 2015). Trained on the m_jj sidebands, the decoder interpolates into the signal
region: sampling ``z ~ N(0, 1)`` with ``c`` drawn from the signal region's m_jj gives a
background template there; a classifier of data vs template then finds the anomaly
(the CATHODE strategy, Hallin et al., arXiv:2109.00546, with a cVAE as the generative model).
The condition is ``log(m_jj)`` standardized in the graph (``log_condition``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError, ModelContractError
from coffea_ad.nn.losses import kl_divergence, mse
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["LOGIT_EPS", "CVAESampler", "ConditionalVAE", "fit_latent_prior", "gaussian_mixture",
           "logit_box"]

#: clip of the box fraction before the logit (keeps it finite: about ±9.2)
LOGIT_EPS = 1e-4


def logit_box(x, *, margin: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box ``(low, high)`` of the rows ``x`` (min/max widened by ``margin`` of the range on
    each side, so no training row sits on an edge) and ``x``'s logit features in it (what
    :meth:`ConditionalVAE.to_model` computes before standardizing), for the standardization.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - margin * span, hi + margin * span
    u = np.clip((x - lo) / (hi - lo), LOGIT_EPS, 1 - LOGIT_EPS)
    return lo, hi, np.log(u) - np.log1p(-u)


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
        centre, scale: feature standardization (of the logit features with ``low``/``high``).
        cond_centre, cond_scale: standardization of the (log) condition.
        low, high: optional per-feature box: the networks then see
            ``standardize(logit((x - low) / (high - low)))`` (values clipped to the box) and
            reconstructions and samples come back through the inverse, so they stay inside
            it. Gaussian noise in that space models features bounded on one or both sides
            (jet mass > 0, τ in (0, 1)) far better than in raw units, where a sampled template
            has τ > 1 or m < 0 and misses the peaks near the edges (:func:`logit_box`).
    """

    output_names = ("score", "reconstruction")

    def __init__(self, n_features: int, n_conditions: int = 1, *,
                 hidden: Sequence[int] = (64, 64), latent: int = 4, beta: float = 1.0,
                 activation: str = "elu", log_condition: bool = True,
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None,
                 cond_centre: Sequence[float] | None = None,
                 cond_scale: Sequence[float] | None = None,
                 low: Sequence[float] | None = None, high: Sequence[float] | None = None):
        super().__init__()
        self.n_features, self.n_conditions, self.latent = n_features, n_conditions, latent
        self.beta, self.log_condition = beta, log_condition
        self.scaler = Standardize(n_features, centre, scale)
        self.logit = low is not None
        if (low is None) != (high is None):
            raise InvalidArgumentError("ConditionalVAE: give both low and high, or neither")
        if self.logit:
            self.register_buffer("low", torch.as_tensor(np.asarray(low), dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(np.asarray(high), dtype=torch.float32))
        self.cond_scaler = Standardize(n_conditions, cond_centre, cond_scale)
        self.encoder = make_mlp([n_features + n_conditions, *hidden], activation,
                                last_activation=True)
        self.to_mean = nn.Linear(hidden[-1], latent)
        self.to_logvar = nn.Linear(hidden[-1], latent)
        self.decoder = make_mlp([latent + n_conditions, *reversed(hidden), n_features], activation)
        # spread of p(x | z, c) around the decoder mean, per standardized feature; 0 until
        # calibrate_noise() is called after training
        self.register_buffer("noise_scale", torch.zeros(n_features))

    def to_model(self, features):
        """Raw features -> the standardized (logit) features the networks see."""
        if self.logit:
            u = ((features - self.low) / (self.high - self.low)).clamp(LOGIT_EPS, 1 - LOGIT_EPS)
            features = torch.log(u) - torch.log(1.0 - u)
        return self.scaler(features)

    def from_model(self, y):
        """Inverse of :meth:`to_model` (raw units)."""
        y = self.scaler.inverse(y)
        if self.logit:
            y = self.low + torch.sigmoid(y) * (self.high - self.low)
        return y

    def condition(self, c):
        """Raw condition -> the standardized (log) condition the networks see."""
        c = c.reshape(c.shape[0], self.n_conditions)
        return self.cond_scaler(torch.log(c) if self.log_condition else c)

    def decode(self, z, c_std):
        return self.decoder(torch.cat([z, c_std], dim=1))

    def terms(self, features, condition):
        x = self.to_model(features)
        c = self.condition(condition)
        h = self.encoder(torch.cat([x, c], dim=1))
        mu, logvar = self.to_mean(h), self.to_logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        r = self.decode(z, c)
        return r, mse(x, r), kl_divergence(mu, logvar)

    def forward(self, features, condition):
        r, reco, kl = self.terms(features, condition)
        return reco + self.beta * kl, self.from_model(r)

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
            x = self.to_model(f)
            cs = self.condition(c)
            h = self.encoder(torch.cat([x, cs], dim=1))
            r = self.decode(self.to_mean(h), cs)
            self.noise_scale.copy_((x - r).square().mean(dim=0).sqrt())
        return self.noise_scale.clone()

    def encode(self, features, condition, *, generator=None):
        """One draw of the posterior ``q(z | x, c)`` per row (eval mode), ``[n, latent]``."""
        self.eval()
        with torch.no_grad():
            f = torch.as_tensor(features, dtype=torch.float32)
            c = torch.as_tensor(condition, dtype=torch.float32)
            h = self.encoder(torch.cat([self.to_model(f), self.condition(c)], dim=1))
            mu, logvar = self.to_mean(h), self.to_logvar(h)
            return mu + torch.randn(mu.shape, generator=generator) * (0.5 * logvar).exp()

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
            return self.from_model(mean + eps * self.noise_scale)


def fit_latent_prior(cvae: ConditionalVAE, features, condition, components: int, *,
                     seed: int = 0, max_rows: int = 100_000
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian mixture (scikit-learn, full covariances) fitted to one posterior draw of at
    most ``max_rows`` rows (seeded choice): at small ``beta`` the encoded training rows no
    longer fill ``N(0, 1)``, so sampling the decoder from ``N(0, 1)`` blurs the template;
    sampling from the fitted mixture does not (the "two-stage VAE", Dai & Wipf,
    arXiv:1903.05789).

    Returns ``(weights [K], means [K, latent], cholesky factors [K, latent, latent])``.
    """
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(features))[:max_rows])
    gen = torch.Generator().manual_seed(int(seed))
    z = cvae.encode(np.asarray(features)[pick], np.asarray(condition)[pick],
                    generator=gen).numpy().astype(np.float64)
    return gaussian_mixture(z, components, seed=seed)


def gaussian_mixture(z, components: int, *, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, means, cholesky factors)`` of a full-covariance Gaussian mixture
    (scikit-learn) fitted to the latent rows ``z``."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(int(components), covariance_type="full", random_state=seed).fit(z)
    return gmm.weights_, gmm.means_, np.linalg.cholesky(gmm.covariances_)


class CVAESampler(nn.Module):
    """The cVAE decoder as its own ONNX graph: ``forward(noise, condition) -> features``.

    ``noise`` is ``[batch, latent + n_features]`` standard normal drawn by the caller (ONNX
    RandomNormal would tie the randomness to the runtime's seed handling): the first
    ``latent`` columns are ``z``, the rest the observation noise scaled by ``noise_scale``.

    With ``prior = (weights, means, cholesky)`` (:func:`fit_latent_prior`) the latent is drawn
    from that Gaussian mixture instead of ``N(0, 1)``, still from standard-normal columns only:
    ``noise`` gets one more column ``n`` (the last); ``u = Φ(n)`` (ONNX ``Erf``) is uniform and
    picks component ``k`` = the number of cumulative weights ``w_1, w_1 + w_2, ...`` below
    ``u``; then ``z = means[k] + cholesky[k] @ noise[:, :latent]``.
    """

    output_names = ("features",)

    def __init__(self, cvae: ConditionalVAE, prior: tuple | None = None):
        super().__init__()
        self.cvae = cvae
        self.components = 0 if prior is None else len(prior[0])
        if prior is not None:
            w, mu, chol = (np.asarray(a, dtype=np.float64) for a in prior)
            if (w.shape != (self.components,) or mu.shape != (self.components, cvae.latent)
                    or chol.shape != (self.components, cvae.latent, cvae.latent)):
                msg = (f"CVAESampler: prior shapes {w.shape}, {mu.shape}, {chol.shape} do not "
                       f"match {self.components} components of a {cvae.latent}-d latent")
                raise ModelContractError(msg)
            edges = np.cumsum(w / w.sum())[:-1]
            self.register_buffer("prior_edges", torch.as_tensor(edges, dtype=torch.float32))
            self.register_buffer("prior_means", torch.as_tensor(mu, dtype=torch.float32))
            self.register_buffer("prior_chol", torch.as_tensor(chol, dtype=torch.float32))

    @property
    def noise_width(self) -> int:
        """Standard-normal columns per row the graph takes."""
        return self.cvae.latent + self.cvae.n_features + (1 if self.components else 0)

    def latent(self, noise):
        """The latent ``z`` of each noise row (``N(0, 1)`` or the mixture prior)."""
        z = noise[:, : self.cvae.latent]
        if not self.components:
            return z
        u = 0.5 * (1.0 + torch.erf(noise[:, -1:] * (1.0 / math.sqrt(2.0))))
        comp = (u > self.prior_edges).to(torch.int64).sum(dim=1)
        return self.prior_means[comp] + torch.matmul(self.prior_chol[comp],
                                                     z.unsqueeze(-1)).squeeze(-1)

    def forward(self, noise, condition):
        c = self.cvae.condition(condition)
        lat, nf = self.cvae.latent, self.cvae.n_features
        eps = noise[:, lat: lat + nf]
        mean = self.cvae.decode(self.latent(noise), c)
        return self.cvae.from_model(mean + eps * self.cvae.noise_scale)
