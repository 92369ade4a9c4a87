"""Conditional density estimation of the background for resonant anomaly detection (CATHODE).

:class:`LogitScaler` maps bounded features to an unbounded, standardized space (min-max to
(0, 1) inside the training range, logit, standardize): a normalizing flow cannot put density
on a hard edge such as τ21 < 1 or Δm ≥ 0, and the logit removes those edges.
:class:`ConditionalFlow` is a neural spline flow from zuko (Rozet et al.; Durkan et al.,
"Neural Spline Flows", arXiv:1906.04032) conditioned on m_jj, as in CATHODE (Hallin et al.,
arXiv:2109.00546): fitted on the m_jj sidebands, it is sampled at signal-region m_jj values
to give the background template. :class:`LatentCVAE` puts the same preprocessing in front of
the conditional VAE of :mod:`coffea_ad.nn.cvae`, so the two estimators are compared on equal
inputs.

Both expose ``training_loss(features, mjj) -> [batch]`` (for :func:`coffea_ad.nn.fit.fit`)
and ``sample(mjj, seed=...) -> features`` in raw units; sampling is a deterministic function
of ``(mjj, seed)``. :class:`EnsembleSampler` samples an equal-weight mixture of several fitted
estimators (independently seeded fits, or the lowest-validation-loss epochs of one fit, as
CATHODE does), which averages out the mismodelling of any single fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError
from coffea_ad.nn.cvae import LOGIT_EPS, ConditionalVAE, gaussian_mixture, logit_box

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["ConditionalFlow", "EnsembleSampler", "LatentCVAE", "LogitScaler"]

class LogitScaler(nn.Module):
    """x -> standardize(logit((x - low) / (high - low))) and back.

    ``low``/``high`` are the training minimum/maximum widened by ``margin`` of the range on
    each side, so training points never sit on the edge; values outside are clipped.
    """

    def __init__(self, x: np.ndarray, *, margin: float = 0.02):
        super().__init__()
        lo, hi, _ = logit_box(x, margin=margin)
        self.register_buffer("low", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(hi, dtype=torch.float32))
        y = self._logit(torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32))
        self.register_buffer("centre", y.mean(0))
        self.register_buffer("scale", y.std(0).clamp_min(1e-6))

    def _logit(self, x):
        u = ((x - self.low) / (self.high - self.low)).clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
        return torch.log(u) - torch.log1p(-u)

    def forward(self, x):
        return (self._logit(x) - self.centre) / self.scale

    def inverse(self, y):
        u = torch.sigmoid(y * self.scale + self.centre)
        return self.low + u * (self.high - self.low)


def _mjj_buffers(module: nn.Module, mjj: np.ndarray) -> None:
    c = np.log(np.asarray(mjj, dtype=np.float64))
    module.register_buffer("c_centre", torch.tensor(float(c.mean()), dtype=torch.float32))
    module.register_buffer("c_scale", torch.tensor(float(c.std() + 1e-6), dtype=torch.float32))


def _condition(module: nn.Module, mjj):
    mjj = torch.as_tensor(mjj, dtype=torch.float32).reshape(-1, 1)
    return (torch.log(mjj) - module.c_centre) / module.c_scale


class ConditionalFlow(nn.Module):
    """Neural spline flow p(x | m_jj) on logit-standardized features (zuko ``NSF``).

    Args:
        x, mjj: training features ``[n, F]`` and dijet masses ``[n]`` (GeV): they fix the
            preprocessing box and the condition's standardization (log m_jj).
        transforms: number of autoregressive spline transforms.
        hidden: hidden layers of each transform's conditioner.
        bins: spline bins.
    """

    def __init__(self, x: np.ndarray, mjj: np.ndarray, *, transforms: int = 4,
                 hidden: Sequence[int] = (64, 64), bins: int = 8):
        super().__init__()
        zuko = require("zuko", purpose="coffea_ad.nn.flow (the conditional normalizing flow)")
        self.n_features = int(np.shape(x)[1])
        self.pre = LogitScaler(x)
        _mjj_buffers(self, mjj)
        self.flow = zuko.flows.NSF(features=self.n_features, context=1, transforms=transforms,
                                   hidden_features=list(hidden), bins=bins)

    def training_loss(self, features, mjj):
        """Negative log-likelihood per row in the preprocessed space (the Jacobian of the
        fixed preprocessing does not depend on the parameters, so it is left out)."""
        return -self.flow(_condition(self, mjj)).log_prob(self.pre(features))

    def forward(self, features, mjj):
        return self.training_loss(features, mjj)

    def sample(self, mjj: np.ndarray, *, seed: int = 0, batch: int = 65536) -> np.ndarray:
        """One feature vector per entry of ``mjj`` (raw units); same ``(mjj, seed)``, same
        output (a private torch generator state, the global one untouched)."""
        self.eval()
        mjj = np.asarray(mjj, dtype=np.float32).reshape(-1)
        out = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for start in range(0, len(mjj), batch):
                c = _condition(self, mjj[start:start + batch])
                y = self.flow(c).sample()  # one draw per context row
                out.append(self.pre.inverse(y.reshape(len(c), self.n_features)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_features), np.float32)


class LatentCVAE(nn.Module):
    """:class:`~coffea_ad.nn.cvae.ConditionalVAE` on logit-standardized features.

    The raw-feature cVAE samples a Gaussian around the decoder mean in standardized units,
    which puts template events at τ21 > 1 or Δm < 0 and misses the peaks near the edges; in
    the logit space both problems are gone and the Gaussian observation noise is a much
    better model.

    ``beta`` sets the observation noise the loss implies: per-row loss = mean squared error
    over the F features + β KL is the ELBO of a Gaussian decoder of variance F β / 2 (in the
    standardized logit space), so β = 0.5 with 4 features allows unit variance, the whole
    spread of the data, and the decoder ignores the latent. A small β (≈ 0.01) keeps the
    detail, but the encoded training set no longer fills N(0, 1); with ``prior_components``
    > 0, :meth:`fit_latent_prior` fits a Gaussian mixture (scikit-learn) to the encoded
    training rows and :meth:`sample` draws the latent from it instead (the "two-stage VAE",
    Dai & Wipf, arXiv:1903.05789).
    """

    def __init__(self, x: np.ndarray, mjj: np.ndarray, *, hidden: Sequence[int] = (64, 64),
                 latent: int = 4, beta: float = 1.0, activation: str = "elu",
                 prior_components: int = 0):
        super().__init__()
        n = int(np.shape(x)[1])
        self.n_features = n
        self.pre = LogitScaler(x)
        c = np.log(np.asarray(mjj, dtype=np.float64))
        self.cvae = ConditionalVAE(n, 1, hidden=hidden, latent=latent, beta=beta,
                                   activation=activation, centre=np.zeros(n), scale=np.ones(n),
                                   cond_centre=[c.mean()], cond_scale=[c.std() + 1e-6])
        k = int(prior_components)
        self.prior_components = k
        # mixture prior of the latent (weights, means, Cholesky factors); until
        # fit_latent_prior is called: one standard normal component repeated
        self.register_buffer("prior_weights", torch.full((k,), 1.0 / max(k, 1)))
        self.register_buffer("prior_means", torch.zeros(k, latent))
        self.register_buffer("prior_chol", torch.eye(latent).repeat(k, 1, 1))

    def training_loss(self, features, mjj):
        return self.cvae.training_loss(self.pre(features), mjj.reshape(-1, 1))

    def forward(self, features, mjj):
        return self.training_loss(features, mjj)

    def calibrate_noise(self, x: np.ndarray, mjj: np.ndarray):
        with torch.no_grad():
            y = self.pre(torch.as_tensor(x, dtype=torch.float32))
        return self.cvae.calibrate_noise(y, np.asarray(mjj, np.float32).reshape(-1, 1))

    def encode(self, x: np.ndarray, mjj: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """One draw of the posterior q(z | x, m_jj) per row (eval mode)."""
        cv = self.cvae
        self.eval()
        with torch.no_grad():
            y = cv.scaler(self.pre(torch.as_tensor(x, dtype=torch.float32)))
            c = cv.condition(torch.as_tensor(np.asarray(mjj, np.float32).reshape(-1, 1)))
            h = cv.encoder(torch.cat([y, c], dim=1))
            mu, logvar = cv.to_mean(h), cv.to_logvar(h)
            gen = torch.Generator().manual_seed(int(seed))
            return (mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()).numpy()

    def fit_latent_prior(self, x: np.ndarray, mjj: np.ndarray, *, seed: int = 0,
                         max_rows: int = 100_000) -> None:
        """Fit the latent mixture prior to the encoded ``x`` (at most ``max_rows``, seeded)."""
        if self.prior_components == 0:
            raise InvalidArgumentError("fit_latent_prior: built with prior_components=0 (standard normal)")
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(x))[:max_rows]
        z = self.encode(np.asarray(x)[pick], np.asarray(mjj)[pick], seed=seed)
        weights, means, chol = gaussian_mixture(z, self.prior_components, seed=seed)
        self.prior_weights.copy_(torch.as_tensor(weights, dtype=torch.float32))
        self.prior_means.copy_(torch.as_tensor(means, dtype=torch.float32))
        self.prior_chol.copy_(torch.as_tensor(chol, dtype=torch.float32))

    def sample(self, mjj: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """As :meth:`ConditionalFlow.sample`."""
        gen = torch.Generator().manual_seed(int(seed))
        cond = np.asarray(mjj, np.float32).reshape(-1, 1)
        if len(cond) == 0:
            return np.zeros((0, self.n_features), np.float32)
        if self.prior_components == 0:
            y = self.cvae.sample(cond, generator=gen)
        else:
            cv = self.cvae
            self.eval()
            with torch.no_grad():
                n = len(cond)
                comp = torch.multinomial(self.prior_weights, n, replacement=True, generator=gen)
                eps = torch.randn((n, cv.latent, 1), generator=gen)
                z = self.prior_means[comp] + (self.prior_chol[comp] @ eps)[:, :, 0]
                noise = torch.randn((n, cv.n_features), generator=gen)
                mean = cv.decode(z, cv.condition(torch.as_tensor(cond)))
                y = cv.scaler.inverse(mean + noise * cv.noise_scale)
        with torch.no_grad():
            return self.pre.inverse(y).numpy()


class EnsembleSampler:
    """Equal-weight mixture of fitted conditional samplers.

    ``sample(mjj, seed=s)`` gives each entry of ``mjj`` to exactly one member (a seeded
    permutation of ``arange(n) % len(members)``, so the members' shares differ by at most
    one row) and draws it from that member with a seed derived from ``s``: the result is a
    deterministic function of ``(mjj, seed)``, as for a single estimator.

    Args:
        members: objects with ``sample(mjj, seed=...) -> [n, F]`` (e.g.
            :class:`ConditionalFlow`, :class:`LatentCVAE`), all with the same ``F``.
    """

    def __init__(self, members: Sequence):
        if not members:
            raise InvalidArgumentError("EnsembleSampler: expected at least one member, found none")
        self.members = list(members)

    def assignment(self, n: int, seed: int) -> np.ndarray:
        """The member index of each of ``n`` rows for ``seed``."""
        return np.random.default_rng([int(seed), 0]).permutation(np.arange(n) % len(self.members))

    def member_seeds(self, seed: int) -> np.ndarray:
        return np.random.default_rng([int(seed), 1]).integers(0, 2**31 - 1, len(self.members))

    def sample(self, mjj: np.ndarray, *, seed: int = 0) -> np.ndarray:
        mjj = np.asarray(mjj, dtype=np.float32).reshape(-1)
        which, seeds = self.assignment(len(mjj), seed), self.member_seeds(seed)
        out = None
        for i, member in enumerate(self.members):
            sel = which == i
            if not sel.any():
                continue
            rows = np.asarray(member.sample(mjj[sel], seed=int(seeds[i])))
            if out is None:
                out = np.empty((len(mjj), rows.shape[1]), dtype=rows.dtype)
            out[sel] = rows
        return out if out is not None else np.zeros((0, 0), np.float32)
