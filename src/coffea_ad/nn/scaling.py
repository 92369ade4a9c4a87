"""Standardization inside the graph: the exported model takes raw features.

Every model of :mod:`coffea_ad.nn` carries its input centre/scale as buffers and standardizes
in ``forward``. So the ONNX file is self-contained (contract ``scaling = "in_graph"``) and
training, validation and inference cannot disagree about the preprocessing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["ACTIVATIONS", "Standardize", "make_mlp", "standardization"]

# name -> torch module class; string options of the models are Literal over these names
ACTIVATIONS: dict[str, type] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def standardization(x: np.ndarray, *, mask: np.ndarray | None = None,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (weighted) mean and standard deviation of ``x`` (StandardScaler).

    Args:
        x: ``[rows, ..., n_features]`` array; all axes but the last are pooled.
        mask: boolean array of ``x.shape[:-1]``: only ``True`` entries count (padding is left
            out, so padded constituents do not drag the mean towards the pad value).
        weights: per-row weights, shape ``x.shape[:1]``.

    Returns:
        ``(centre, scale)`` float32 arrays of ``[n_features]``; a constant feature gets scale 1
        (a 0 would divide by zero).
    """
    x = np.asarray(x, dtype=np.float64)
    n_features = x.shape[-1]
    w = np.ones(x.shape[:-1]) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 2)), x.shape[:-1])
    if mask is not None:
        w = w * np.asarray(mask, dtype=np.float64)
    flat = x.reshape(-1, n_features)
    wf = w.reshape(-1)
    if wf.sum() <= 0:
        raise InvalidArgumentError(f"standardization: expected at least one row with weight > 0, found "
                         f"{x.shape[0]} rows with total weight {wf.sum()}")
    centre = (flat * wf[:, None]).sum(axis=0) / wf.sum()
    var = ((flat - centre) ** 2 * wf[:, None]).sum(axis=0) / wf.sum()
    scale = np.sqrt(var)
    scale[~(scale > 1e-12)] = 1.0  # constant feature: leave it centred, unscaled
    return centre.astype(np.float32), scale.astype(np.float32)


class Standardize(nn.Module):
    """``(x - centre) / scale`` on the last axis, with centre/scale stored as buffers.

    Args:
        n_features: size of the last axis.
        centre, scale: per-feature values (defaults 0 and 1: identity).
    """

    def __init__(self, n_features: int, centre: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None):
        super().__init__()
        c = torch.zeros(n_features) if centre is None else torch.as_tensor(
            np.asarray(centre, dtype=np.float32))
        s = torch.ones(n_features) if scale is None else torch.as_tensor(
            np.asarray(scale, dtype=np.float32))
        if c.shape != (n_features,) or s.shape != (n_features,):
            raise InvalidArgumentError(f"Standardize: expected centre and scale of shape ({n_features},), "
                             f"found {tuple(c.shape)} and {tuple(s.shape)}")
        self.register_buffer("centre", c.clone())
        self.register_buffer("scale", s.clone())

    def forward(self, x):
        return (x - self.centre) / self.scale

    def inverse(self, x):
        """Back to raw units."""
        return x * self.scale + self.centre

    def set(self, centre: Sequence[float], scale: Sequence[float]) -> None:
        """Replace centre/scale in place (after the module was built)."""
        self.centre.copy_(torch.as_tensor(np.asarray(centre, dtype=np.float32)))
        self.scale.copy_(torch.as_tensor(np.asarray(scale, dtype=np.float32)))


def make_mlp(sizes: Sequence[int], activation: str, *,
             last_activation: bool = False) -> nn.Sequential:
    """A plain multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Args:
        sizes: layer widths including input and output.
        activation: a key of :data:`ACTIVATIONS`.
        last_activation: apply the activation after the last layer too.

    Returns:
        ``nn.Sequential`` of ``Linear`` and activation layers.
    """
    if activation not in ACTIVATIONS:
        from coffea_ad.errors import UnknownNameError

        raise UnknownNameError("activation", activation, ACTIVATIONS)
    layers: list = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
