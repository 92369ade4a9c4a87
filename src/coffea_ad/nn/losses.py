"""Losses of the anomaly-detection models, each returning one value per row.

Every loss here returns a per-row tensor ``[batch]`` (the anomaly score of that row when it is
a reconstruction loss) so that the same function is used for training (weighted mean over the
batch, see :func:`coffea_ad.nn.fit.fit`) and inside exported ONNX graphs (per-row score).
All of them are written with plain tensor ops (no ``torch.cdist``, no boolean indexing) so that
they trace into ONNX with dynamic batch size.
"""

from __future__ import annotations

from coffea_ad._optional import require

torch = require("torch", purpose="coffea_ad.nn")
Tensor = torch.Tensor

__all__ = [
    "chamfer",
    "distance_correlation",
    "kl_divergence",
    "mae",
    "mse",
    "pinball",
]


def mae(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error per row, averaged over all non-batch axes.

    Args:
        x, y: tensors of equal shape ``[batch, ...]``.

    Returns:
        ``[batch]`` tensor of ``mean(|x - y|)``.
    """
    return (x - y).abs().flatten(1).mean(dim=1)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per row, averaged over all non-batch axes.

    Args:
        x, y: tensors of equal shape ``[batch, ...]``.

    Returns:
        ``[batch]`` tensor of ``mean((x - y)^2)``.
    """
    return (x - y).square().flatten(1).mean(dim=1)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL divergence of a diagonal Gaussian from the standard normal, per row.

    ``KL(N(mu, sigma^2) || N(0, 1)) = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)``
    (Kingma & Welling, arXiv:1312.6114, appendix B).

    Args:
        mu, logvar: ``[batch, latent]`` mean and log-variance of the posterior.

    Returns:
        ``[batch]`` tensor, summed over latent dimensions.
    """
    return -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum(dim=1)


def chamfer(x: Tensor, y: Tensor, *, x_mask: Tensor | None = None,
            y_mask: Tensor | None = None) -> Tensor:
    """Symmetric Chamfer distance between two point sets, per row.

    ``d(X, Y) = mean_{x in X} min_{y in Y} |x - y|^2 + mean_{y in Y} min_{x in X} |x - y|^2``
    (Fan, Su & Guibas, arXiv:1612.00603; used on jet constituents (Δη, Δφ, p_T) by the CMS
    model-agnostic dijet search, CMS-EXO-22-026). Masked-out
    points neither act as nearest neighbours nor enter the means.

    Args:
        x: ``[batch, n, d]`` points (e.g. the input constituents).
        y: ``[batch, m, d]`` points (e.g. the reconstruction).
        x_mask: ``[batch, n]`` 1 for real points, 0 for padding (all real if ``None``).
        y_mask: ``[batch, m]`` likewise for ``y``.

    Returns:
        ``[batch]`` tensor; 0 for a row in which either set is empty.
    """
    if x_mask is None:
        x_mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    if y_mask is None:
        y_mask = torch.ones(y.shape[:2], dtype=y.dtype, device=y.device)
    x_mask = x_mask.to(x.dtype)
    y_mask = y_mask.to(y.dtype)
    # pairwise squared distances by broadcasting (torch.cdist does not export to ONNX)
    d2 = (x.unsqueeze(2) - y.unsqueeze(1)).square().sum(dim=-1)  # [batch, n, m]
    # a large finite penalty keeps padded partners from being the minimum; inf would give
    # inf * 0 = NaN in rows where a whole set is padding
    big = 1e9
    d_xy = (d2 + big * (1.0 - y_mask).unsqueeze(1)).min(dim=2).values  # nearest y for each x
    d_yx = (d2 + big * (1.0 - x_mask).unsqueeze(2)).min(dim=1).values  # nearest x for each y
    nx = x_mask.sum(dim=1)
    ny = y_mask.sum(dim=1)
    both = ((nx > 0) & (ny > 0)).to(x.dtype)
    term_x = (d_xy * x_mask).sum(dim=1) / nx.clamp(min=1.0)
    term_y = (d_yx * y_mask).sum(dim=1) / ny.clamp(min=1.0)
    return (term_x + term_y) * both


def distance_correlation(x: Tensor, y: Tensor, *, weights: Tensor | None = None) -> Tensor:
    """Squared distance correlation dCorr²(x, y) of two 1-d samples (the DisCo penalty).

    Sample distance covariance of Székely, Rizzo & Bakirov (Ann. Statist. 35 (2007) 2769),
    with optional per-event weights as in DisCo (Kasieczka & Shih, arXiv:2001.05310):
    ``dCov²(x, y) = <A_jk B_jk>``, ``dCorr² = dCov²(x, y) / sqrt(dCov²(x, x) dCov²(y, y))``,
    where ``A``, ``B`` are the double-centred distance matrices and ``<.>`` the weighted mean.
    0 for independent samples (in the large-sample limit), 1 for linearly related ones.

    Args:
        x, y: ``[batch]`` tensors (e.g. the anomaly score and m_T).
        weights: ``[batch]`` non-negative weights (normalized here to mean 1), ``None`` = 1.

    Returns:
        0-d tensor, differentiable in ``x`` (and ``y``).
    """
    x = x.reshape(-1)
    y = y.reshape(-1)
    w = torch.ones_like(x) if weights is None else weights.reshape(-1).to(x.dtype)
    w = w / w.mean()
    n = x.shape[0]

    def centred(v: Tensor) -> Tensor:
        a = (v.unsqueeze(0) - v.unsqueeze(1)).abs()  # pairwise |v_j - v_k|
        row = (a * w).mean(dim=1, keepdim=True)  # sum_k a_jk w_k / n
        total = (row.squeeze(1) * w).mean()
        return a - row - row.transpose(0, 1) + total

    a = centred(x)
    b = centred(y)
    ww = w.unsqueeze(0) * w.unsqueeze(1) / (n * n)
    ab = (a * b * ww).sum()
    aa = (a * a * ww).sum()
    bb = (b * b * ww).sum()
    # a constant sample has dCov² = 0: clamp so the penalty is 0, not NaN
    return ab / (aa * bb).clamp(min=1e-30).sqrt()


def pinball(prediction: Tensor, target: Tensor, quantiles: Tensor | list[float]) -> Tensor:
    """Pinball (quantile) loss per row, summed over the quantiles.

    ``L_tau(y, q) = max(tau (y - q), (tau - 1)(y - q))`` (Koenker & Bassett, Econometrica 46
    (1978) 33); minimized in expectation by the tau-quantile of ``y``.

    Args:
        prediction: ``[batch, n_quantiles]`` predicted quantiles.
        target: ``[batch]`` observed values (e.g. the anomaly score).
        quantiles: the ``n_quantiles`` levels tau in (0, 1).

    Returns:
        ``[batch]`` tensor.
    """
    tau = torch.as_tensor(quantiles, dtype=prediction.dtype, device=prediction.device)
    diff = target.reshape(-1, 1) - prediction
    return torch.maximum(tau * diff, (tau - 1.0) * diff).sum(dim=1)
