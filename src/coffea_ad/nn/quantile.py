"""Quantile regression network of the anomaly score versus m_jj (decorrelated cuts).

The network predicts several quantiles ``q_tau(m_jj)`` of the score distribution of the
background at once, trained with the pinball loss (Koenker & Bassett 1978). Cutting on
``score > q_tau(m_jj)`` selects a fraction ``1 - tau`` of the background at every m_jj, so
the cut does not sculpt the m_jj spectrum (as in the CMS model-agnostic dijet search,
CMS-EXO-22-026). The quantiles are non-crossing by construction: the lowest is free, the
others add softplus increments.
"""

from __future__ import annotations

from collections.abc import Sequence

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError
from coffea_ad.nn.losses import pinball
from coffea_ad.nn.scaling import Standardize, make_mlp

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["QuantileRegressor"]


class QuantileRegressor(nn.Module):
    """Monotone-in-tau quantile regression of a target on a few inputs.

    ``forward(inputs)`` with raw ``inputs [batch, n_inputs]`` (e.g. m_jj) returns
    ``quantiles [batch, n_quantiles]`` in the target's raw units, increasing along the last
    axis.

    Args:
        n_inputs: input width.
        quantiles: levels tau, strictly increasing in (0, 1).
        hidden: MLP widths.
        activation: hidden activation.
        log_inputs: take ``log`` of the inputs first (m_jj).
        centre, scale: standardization of the (log) inputs.
        target_centre, target_scale: standardization of the target (the net learns
            standardized quantiles; the output is transformed back).
    """

    output_names = ("quantiles",)

    def __init__(self, n_inputs: int = 1, *, quantiles: Sequence[float] = (0.5, 0.9, 0.99),
                 hidden: Sequence[int] = (32, 32), activation: str = "elu",
                 log_inputs: bool = True, centre: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None, target_centre: float = 0.0,
                 target_scale: float = 1.0):
        super().__init__()
        taus = list(quantiles)
        if not taus or any(not 0 < t < 1 for t in taus) or sorted(set(taus)) != taus:
            raise InvalidArgumentError(f"quantiles: expected strictly increasing levels in (0, 1), "
                             f"found {taus}")
        self.quantiles = taus
        self.n_inputs, self.log_inputs = n_inputs, log_inputs
        self.scaler = Standardize(n_inputs, centre, scale)
        self.target = Standardize(1, [target_centre], [target_scale])
        self.net = make_mlp([n_inputs, *hidden, len(taus)], activation)
        self.register_buffer("taus", torch.tensor(taus, dtype=torch.float32))

    def standardized(self, inputs):
        x = inputs.reshape(inputs.shape[0], self.n_inputs)
        x = self.scaler(torch.log(x) if self.log_inputs else x)
        raw = self.net(x)
        # non-crossing: q_0 free, q_k = q_0 + sum_{j<=k} softplus(delta_j)
        steps = nn.functional.softplus(raw[:, 1:])
        return torch.cat([raw[:, :1], raw[:, :1] + torch.cumsum(steps, dim=1)], dim=1)

    def forward(self, inputs):
        q = self.standardized(inputs)
        return q * self.target.scale + self.target.centre

    def training_loss(self, inputs, target):
        q = self.standardized(inputs)
        y = (target - self.target.centre) / self.target.scale
        return pinball(q, y, self.taus)
