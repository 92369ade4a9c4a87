"""Conditional normalizing flow: anomaly score -log p(x | kinematics) of background jets.

A reconstruction or density score on jet substructure learned from background alone also
learns how the substructure changes with jet p_T; a harder signal then looks anomalous for
its p_T rather than its structure. Conditioning the density on the jet kinematics c (log p_T)
and scoring ``-log p(x | c)`` asks instead how unusual a jet's substructure is *for a
background jet of the same p_T*.

The density is a masked autoregressive flow (Papamakarios, Pavlakou, Murray, arXiv:1705.07057)
from ``zuko`` with the context fed to every autoregressive network. The module takes the raw
feature row ``[conditions..., inputs...]`` (the contract's feature order), applies ``log`` to
the inputs named positive (widths, counts, correlator ratios, which are near log-normal) and
standardizes inside the graph, so the exported ONNX file is self-contained.

Outputs: ``nll`` = -log p(z | c), the density of the standardized (log-transformed) inputs z;
and ``score`` = exp((nll - nll_ref) / n_inputs) = (p(z | c) / p_ref)^(-1/n_inputs), the
inverse density per input dimension relative to the typical (median) training jet. The
score orders jets exactly as ``nll`` does (same ROC), but is positive and of order 1 for QCD,
which is what the processors' log-spaced score axes (1e-3 ... 1e2) expect of a loss; its
exponent is clipped at 80 (float32 range).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["SubstructureFlow"]

#: the lower clip before ``log``: defined values of degenerate jets are 0
LOG_FLOOR = 1e-4
#: standardized inputs and conditions are clipped to [-Z_MAX, Z_MAX]
Z_MAX = 10.0
#: the upper clip of the score's exponent: exp(80) ~ 5.5e34 stays below the float32 maximum
MAX_EXPONENT = 80.0


class SubstructureFlow(nn.Module):
    """``forward(features) -> (score, nll)`` per row (see the module docstring).

    Args:
        n_conditions: the first ``n_conditions`` columns of ``features`` are the context c.
        n_inputs: the following columns are x.
        log_inputs: per-input flag: take ``log(max(x, 1e-4))`` before standardizing.
        centre, scale: standardization of the (log-transformed) inputs, then of the
            conditions: ``[n_inputs + n_conditions]`` each (see :meth:`preprocess`).
        transforms: number of autoregressive transforms.
        hidden: hidden widths of each transform's network.
        nll_ref: the reference of ``score`` (set it after training with
            :meth:`set_reference`).
    """

    output_names = ("score", "nll")

    def __init__(self, n_conditions: int, n_inputs: int, *, log_inputs: Sequence[bool],
                 centre: Sequence[float], scale: Sequence[float], transforms: int = 4,
                 hidden: Sequence[int] = (64, 64), nll_ref: float = 0.0) -> None:
        super().__init__()
        zuko = require("zuko", purpose="the conditional flow")
        if len(log_inputs) != n_inputs:
            raise InvalidArgumentError(f"SubstructureFlow: expected {n_inputs} log_inputs flags, found "
                             f"{len(log_inputs)}")
        n = n_inputs + n_conditions
        if len(centre) != n or len(scale) != n:
            raise InvalidArgumentError(f"SubstructureFlow: expected centre and scale of length {n}, found "
                             f"{len(centre)} and {len(scale)}")
        self.n_conditions, self.n_inputs = n_conditions, n_inputs
        self.register_buffer("log_mask", torch.tensor(list(log_inputs), dtype=torch.bool))
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre, np.float32)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float32)))
        self.register_buffer("nll_ref", torch.tensor(float(nll_ref)))
        self.flow = zuko.flows.MAF(features=n_inputs, context=n_conditions,
                                   transforms=transforms, hidden_features=tuple(hidden))

    @staticmethod
    def transform_inputs(x: np.ndarray, log_inputs: Sequence[bool]) -> np.ndarray:
        """The numpy twin of the in-graph log transform (for computing centre/scale)."""
        x = np.asarray(x, np.float64).copy()
        flags = np.asarray(log_inputs, bool)
        x[:, flags] = np.log(np.maximum(x[:, flags], LOG_FLOOR))
        return x

    def preprocess(self, features):
        """Raw ``[batch, n_conditions + n_inputs]`` -> standardized ``(x, c)``."""
        c = features[:, : self.n_conditions]
        x = features[:, self.n_conditions:]
        x = torch.where(self.log_mask, torch.log(torch.clamp(x, min=LOG_FLOOR)), x)
        z = (torch.cat([x, c], dim=1) - self.centre) / self.scale
        # heavy tails (D2 of jets with a tiny e2, ...) reach hundreds of standard deviations;
        # clipping at ±Z_MAX keeps such jets maximally anomalous without letting a handful of
        # them dominate the mean likelihood that training and early stopping follow
        z = torch.clamp(z, -Z_MAX, Z_MAX)
        return z[:, : self.n_inputs], z[:, self.n_inputs:]

    def nll(self, features):
        """``-log p(z | c)`` per row."""
        x, c = self.preprocess(features)
        return -self.flow(c).log_prob(x)

    def forward(self, features):
        nll = self.nll(features)
        # clamped so that a jet far outside the training range (e.g. a soft, few-constituent
        # jet the preselection drops anyway) gets a large finite score, not float32 inf
        exponent = torch.clamp((nll - self.nll_ref) / self.n_inputs, max=MAX_EXPONENT)
        return torch.exp(exponent), nll

    def set_reference(self, features) -> float:
        """Set ``nll_ref`` to the median ``nll`` of ``features`` (e.g. the training jets), so
        that the typical jet scores 1; returns it."""
        with torch.no_grad():
            ref = float(torch.median(self.nll(torch.as_tensor(np.asarray(features, np.float32)))))
        self.nll_ref.fill_(ref)
        return ref

    def training_loss(self, features):
        """Per-row negative log-likelihood that :func:`coffea_ad.nn.fit.fit` minimizes."""
        return self.nll(features)
