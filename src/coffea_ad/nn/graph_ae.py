"""Graph autoencoder on ΔR graphs of jet constituents (SVJ with constituents).

Nodes are the (up to ``n_particles``) constituents of a jet, with features such as η, φ, m,
p_T, pdgId, d0, dz; edges join constituents closer than ``r_c`` in ΔR (or are weighted by a
Gaussian in ΔR). The adjacency is built inside the graph from the η and φ columns, so the
exported model takes only the padded node features and the node mask. Message passing is the
graph convolution of Kipf & Welling (arXiv:1609.02907), ``H' = act(D^-1/2 (A + I) D^-1/2 H W)``,
written with dense batched matrix products and multiplicative masks: every op is an ONNX
standard op (MatMul, Exp, Round, Less, Sqrt), no scatter/gather with dynamic indices.
The anomaly score is the masked mean squared error of the reconstructed node features
(the SVJ-with-constituents workflow of DESIGN.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

from coffea_ad._optional import require
from coffea_ad.nn.scaling import ACTIVATIONS, Standardize

torch = require("torch", purpose="coffea_ad.nn")
nn = torch.nn

__all__ = ["GraphAutoencoder", "delta_r_adjacency"]


def delta_r_adjacency(eta, phi, mask, *, r_c: float = 0.1,
                      kind: Literal["hard", "weighted"] = "hard", periodic_phi: bool = True):
    """Dense ΔR adjacency with self-loops between real nodes.

    Args:
        eta, phi: ``[batch, n]`` coordinates.
        mask: ``[batch, n]`` 1 real, 0 padding.
        r_c: radius: ``hard`` links pairs with ``ΔR < r_c``; ``weighted`` uses
            ``exp(-ΔR² / (2 r_c²))``.
        kind: ``"hard"`` or ``"weighted"``.
        periodic_phi: wrap ``Δφ`` to ``[-π, π]`` (``phi`` a raw azimuth). ``False`` for φ
            relative to the jet axis, where the wrap is the identity (see
            :class:`GraphAutoencoder`).

    Returns:
        ``[batch, n, n]`` float adjacency, zero in rows/columns of padded nodes, 1 on the
        diagonal of real nodes.
    """
    m = mask.to(eta.dtype)
    a = _pair_adjacency(eta, phi, m > 0, r_c=r_c, kind=kind, periodic_phi=periodic_phi)
    return a * m.unsqueeze(2) * m.unsqueeze(1)


def _pair_adjacency(eta, phi, real, *, r_c: float, kind: str, periodic_phi: bool = True):
    """The adjacency of :func:`delta_r_adjacency` before the padding masks: padded nodes
    (``real`` False) may be linked, to each other and to real nodes, but every entry is
    finite."""
    # where(), not a product with the mask: NaN/inf in padded slots must not leak (NaN * 0).
    # Only the weighted kind needs it: a hard link is a comparison, false for NaN (and for
    # inf distances), so every entry is 0 or 1 whatever the padded slots hold, and the
    # padded rows and columns are cleared by the masks (measured 0.99x without these two)
    if kind != "hard":
        eta = torch.where(real, eta, 0.0)
        phi = torch.where(real, phi, 0.0)
    deta = eta.unsqueeze(2) - eta.unsqueeze(1)
    dphi = phi.unsqueeze(2) - phi.unsqueeze(1)
    if periodic_phi:
        two_pi = 2.0 * math.pi
        dphi = dphi - two_pi * torch.round(dphi / two_pi)  # wrap to [-pi, pi]
    dr2 = deta.square() + dphi.square()
    if kind == "hard":
        return (dr2 < r_c * r_c).to(eta.dtype)
    if kind == "weighted":
        return torch.exp(-dr2 / (2.0 * r_c * r_c))
    from coffea_ad.errors import UnknownNameError

    raise UnknownNameError("adjacency kind", kind, ["hard", "weighted"])


class _ExportedELU(nn.ELU):
    """ELU (α = 1) that exports as ``Max(x, Exp(Min(x, 0)) - 1)``: ONNX Runtime's ``Elu``
    kernel evaluates its exponential one element at a time (several ns each, the largest
    single cost of the GAE graph), while ``Exp`` and ``Min``/``Max`` run vectorized. The same
    function (``eˣ - 1 ≥ x``, equality at 0): results differ from ``Elu`` by the rounding of
    ``eˣ`` (≤ 1 ulp at 1, i.e. 6e-8 absolute), never at ``x > 0``. Eager torch (training)
    keeps the fused ``nn.ELU``."""

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return torch.maximum(x, torch.exp(torch.clamp(x, max=0.0)) - 1.0)
        return super().forward(x)


class _GraphConv(nn.Module):
    """``act(Â (H Wᵀ + b))``.

    The aggregation stays at the output width even where the layer widens: aggregating first,
    ``(Â H) Wᵀ + rowsum(Â) bᵀ``, is the same product with fewer multiply-adds
    (``2 n² min(n_in, n_out)``), but in ONNX Runtime on one thread these [n, n] @ [n, width]
    products are small enough that their cost hardly depends on the width, and spreading the
    bias (a broadcast Mul, or a K = 1 MatMul that un-names the bias initializer) took back
    what the narrower MatMul saved: measured 0.95x-1.03x on the shipped graph AE."""

    def __init__(self, n_in: int, n_out: int, activation: str | None):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        if activation == "elu":
            self.act: nn.Module | None = _ExportedELU()
        else:
            self.act = ACTIVATIONS[activation]() if activation else None

    def forward(self, h, a_norm, n: int):
        # the linear map on [batch * n, F] rows exports as one Gemm with its bias (a batched
        # MatMul plus a broadcast Add otherwise); the widths and n are Python ints, so the
        # reshapes export with constant shapes (no Shape/Gather/Concat chain per layer)
        h = self.linear(h.reshape(-1, self.linear.in_features))
        h = a_norm @ h.reshape(-1, n, self.linear.out_features)
        if self.act is not None:
            h = self.act(h)
        # no mask product: rows of padded nodes in a_norm are 0, so theirs are exactly 0 here
        # (and every activation used maps 0 to 0)
        return h


class GraphAutoencoder(nn.Module):
    """GCN encoder to a per-node latent, GCN decoder back to node features.

    ``forward(particles, mask)`` -> ``(loss, reconstruction)``: per-jet masked MSE on
    standardized node features [batch], and the reconstructed nodes in raw units
    ``[batch, n, F]`` (zero at padded nodes).

    Args:
        n_features: node features (columns of ``particles``).
        n_particles: padded number of nodes.
        eta_index, phi_index: columns holding η and φ for the adjacency.
        r_c: ΔR radius of the adjacency.
        periodic_phi: the φ column is a raw azimuth, so ``Δφ`` is wrapped to ``[-π, π]``.
            ``False`` when it is φ relative to the jet axis (``dphi`` of
            :mod:`coffea_ad.features.particles`, wrapped to ``[-π, π)`` per constituent): the
            graph then leaves out the wrap (four ops on every ``[n, n]`` pair tensor). For
            constituents of one jet ``|Δφ_ij| = |dphi_i - dphi_j| < π``, where the wrap
            ``Δφ - 2π round(Δφ / 2π)`` is exactly ``Δφ`` (round gives ±0), and padded nodes sit
            at 0 (``|Δφ| = |dphi_i| ≤ π``; masked anyway). The two can differ only for a pair
            with ``|dphi_i - dphi_j| > π`` whose wrapped distance is below ``r_c``, i.e. two
            constituents both about π away from their jet's axis on opposite sides, which a
            clustered jet (R = 0.8) does not have; such a pair is linked with the wrap and not
            without it.
        adjacency: ``"hard"`` (ΔR < r_c) or ``"weighted"`` (Gaussian in ΔR).
        hidden: encoder widths (decoder mirrors them).
        latent: per-node latent width (< n_features, the bottleneck).
        activation: hidden activation.
        centre, scale: per-feature standardization.
    """

    output_names = ("loss", "reconstruction")

    def __init__(self, n_features: int = 7, n_particles: int = 50, *, eta_index: int = 0,
                 phi_index: int = 1, r_c: float = 0.1, periodic_phi: bool = True,
                 adjacency: Literal["hard", "weighted"] = "hard", hidden: Sequence[int] = (32, 16),
                 latent: int = 4, activation: str = "elu",
                 centre: Sequence[float] | None = None, scale: Sequence[float] | None = None):
        super().__init__()
        if adjacency not in ("hard", "weighted"):
            from coffea_ad.errors import UnknownNameError

            raise UnknownNameError("adjacency kind", adjacency, ["hard", "weighted"])
        self.n_features, self.n_particles = n_features, n_particles
        self.eta_index, self.phi_index = eta_index, phi_index
        self.r_c, self.adjacency, self.periodic_phi = r_c, adjacency, periodic_phi
        self.scaler = Standardize(n_features, centre, scale)
        sizes = [n_features, *hidden, latent]
        self.encoder = nn.ModuleList(_GraphConv(a, b, activation)
                                     for a, b in itertools.pairwise(sizes))
        back = list(reversed(sizes))
        self.decoder = nn.ModuleList(
            _GraphConv(a, b, activation if i < len(back) - 2 else None)
            for i, (a, b) in enumerate(itertools.pairwise(back)))

    def normalized_adjacency(self, particles, mask):
        """``D^-1/2 A D^-1/2`` of :func:`delta_r_adjacency` (zero rows and columns at padded
        nodes), ``[batch, n, n]``."""
        m = mask.to(particles.dtype)
        flat = particles.reshape(-1, self.n_particles * self.n_features)
        return self._normalized_adjacency(flat, m, m > 0)

    def _normalized_adjacency(self, flat, m, real):
        """``flat``: the node features as ``[batch, n * F]``."""
        # η and φ as strided slices of the flat rows: in ONNX Runtime a Slice with step F,
        # measured 0.97x of the graph with a Gather on the last axis of [batch, n, F]
        f = self.n_features
        a = _pair_adjacency(flat[:, self.eta_index::f], flat[:, self.phi_index::f], real,
                            r_c=self.r_c, kind=self.adjacency, periodic_phi=self.periodic_phi)
        # the padding masks folded into the degree vector instead of two [n, n] products:
        # A m is the degree of the masked adjacency at real nodes, and a 0 in the scale vector
        # clears the row and column of every padded node. Every real node has its self-loop
        # (ΔR = 0: 1 in both kinds), so its degree is ≥ 1 and the clamp changes nothing there;
        # at padded nodes (A m may be 0) it keeps the rsqrt finite for the product with m
        deg = (a @ m.unsqueeze(-1)).clamp(min=1.0)
        s = deg.rsqrt() * m.unsqueeze(-1)  # [batch, n, 1]
        # the normalized matrix is formed once (two [n, n] products). Scaling the node vectors
        # in every layer instead, s ⊙ (A (s ⊙ h)), has fewer multiplies but was slower in ONNX
        # Runtime on one thread: its Mul broadcasting s over [n, 4] / [n, 7] rows costs about
        # as much per jet as one over [n, n] (0.93x / 0.84x of the graph before the wrap was
        # dropped, against 0.90x / 0.82x this way, batch 32 / 128), and with s expanded once
        # per width to same-shape products, 1.03x / 1.05x of this graph
        return s * a * s.transpose(1, 2)

    def forward(self, particles, mask, adjacency=None):
        """``adjacency``: the normalized adjacency of these jets (``normalized_adjacency``,
        or :func:`coffea_ad.features.normalized_adjacency` outside the graph); ``None``: built
        here from the η and φ columns. An export that takes it as an input leaves the [n, n]
        construction, about half of the graph's ONNX Runtime time, to the scorer's compiled
        pass over the real pairs."""
        if tuple(particles.shape[1:]) != (self.n_particles, self.n_features):
            from coffea_ad.errors import InvalidArgumentError

            msg = (f"particles must be [batch, {self.n_particles}, {self.n_features}] (the "
                   f"model's n_particles and n_features), found {list(particles.shape)}")
            raise InvalidArgumentError(msg)
        n, f = self.n_particles, self.n_features
        m = mask.to(particles.dtype)
        real = m > 0  # one Greater for the adjacency and the node features
        # node-level ops on the flat [batch, n * F] layout (a free reshape of the contiguous
        # input) with centre and scale tiled to n * F: ONNX Runtime broadcasts [n, F] by [F]
        # one innermost span (F elements) per call, here one span of n * F. The same values:
        # each element sees the same Sub and Div
        flat = particles.reshape(-1, n * f)
        a = self._normalized_adjacency(flat, m, real) if adjacency is None else adjacency
        centre = self.scaler.centre.repeat(n)
        scale = self.scaler.scale.repeat(n)
        # the mask spread over the features by a K = 1 product (exact: m is 0 or 1) instead
        # of an Expand of [n, 1] to [n, F] (one element per broadcast span)
        ones = torch.ones(1, f, dtype=m.dtype, device=m.device)
        m_f = (m.reshape(-1, 1) @ ones).reshape(-1, n * f)
        real_f = m_f > 0
        x = torch.where(real_f, (flat - centre) / scale, 0.0)
        h = x.reshape(-1, n, f)
        for layer in (*self.encoder, *self.decoder):
            h = layer(h, a, n)
        h = h.reshape(-1, n * f)
        n_real = m.sum(dim=1).clamp(min=1.0)
        # no mask in the sum: at padded nodes h is exactly 0 (zero rows of the adjacency) and
        # so is x (the where() above), so their squared errors are 0. Summed over the features
        # first, then the nodes, as before: bit-identical scores (one ReduceSum over n * F
        # rounds differently, ≤ 4e-7 relative, and was no faster)
        loss = (h - x).square().reshape(-1, n, f).sum(dim=2).sum(dim=1) / (n_real * f)
        # a product with the 0/1 mask rather than a where(): h is finite wherever the real
        # nodes' features are (the padding is cleared in x), so padded entries are exactly 0
        # and real ones unchanged (0.99x / 0.98x at batch 32 / 128)
        recon = (h * scale + centre) * m_f
        return loss, recon.reshape(-1, n, f)

    def training_loss(self, particles, mask):
        return self.forward(particles, mask)[0]
