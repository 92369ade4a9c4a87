"""ΔR graphs of jet constituents with fixed N and masks: dense adjacency and edge lists.

A graph autoencoder exported to ONNX needs static shapes, so each jet is a graph on exactly
``n`` node slots (the p_T-ordered, padded particle list of :mod:`.particles`) and its edges are
given twice, in the two forms such models take:

- ``adjacency [n_jets, n, n]``: 1 where ΔR_ij < r_c between real nodes, self-loops on real
  nodes (the convention of :func:`coffea_ad.nn.graph_ae.delta_r_adjacency`, which builds the
  same matrix inside the model from the η, φ columns);
- ``edge_index [n_jets, 2, E]`` (source, target), ``edge_weight [n_jets, E]`` and
  ``edge_mask [n_jets, E]``: for the radius graph E = n(n − 1), every ordered pair i ≠ j in a
  fixed order, ``edge_mask`` marking those with ΔR < r_c; for the kNN graph E = n k, the k
  nearest real neighbours (in ΔR, self excluded) of each node, ``edge_mask`` False where a
  node is padding or has fewer than k real neighbours.

Everything is computed with awkward on regular dimensions, so dask-awkward inputs work per
partition like the rest of :mod:`coffea_ad.features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import awkward as ak
import numba
import numpy as np

from coffea_ad.errors import InvalidArgumentError, UnknownNameError
from coffea_ad.features._columnar import delta_phi, dispatch
from coffea_ad.features.particles import (
    PARTICLE_FEATURES,
    _particle_record,
    _split,
)

__all__ = ["GRAPH_NODE_FEATURES", "constituent_graph", "normalized_adjacency"]

#: Default node features: the constituent inputs of the SVJ graph-AE study (DESIGN.md).
GRAPH_NODE_FEATURES: tuple[str, ...] = ("eta", "phi", "mass", "pt", "pdgId", "d0", "dz")

Weight = Literal["delta_r", "gaussian", "unit"]


def _edge_weight(dr: Any, *, weight: str, r_c: float) -> Any:
    if weight == "delta_r":
        return dr
    if weight == "gaussian":
        return np.exp(-(dr * dr) / (2.0 * r_c * r_c))
    return ak.ones_like(dr)


def _graph_record(constituents: ak.Array, jets: ak.Array, *, n: int,
                  features: tuple[str, ...], r_c: float, knn: int | None,
                  weight: str) -> ak.Array:
    record = _particle_record(constituents, jets, n=n, features=(*features, "deta", "dphi"),
                              pad_value=0.0)
    values, mask = record["values"], record["mask"]
    nf = len(features)
    deta = ak.values_astype(values[..., nf], np.float64)
    dphi = ak.values_astype(values[..., nf + 1], np.float64)
    # pairwise distances on the regular [n, n] block; Δφ re-wrapped so pairs across the jet's
    # φ = ±π cut keep their small separation
    d_eta = deta[..., :, np.newaxis] - deta[..., np.newaxis, :]
    d_phi = delta_phi(dphi[..., :, np.newaxis], dphi[..., np.newaxis, :])
    dr = np.sqrt(d_eta * d_eta + d_phi * d_phi)
    pair = mask[..., :, np.newaxis] & mask[..., np.newaxis, :]
    adjacency = ak.values_astype(pair & (dr < r_c), np.float32)

    if knn is None:
        off_diag = np.flatnonzero(~np.eye(n, dtype=bool).ravel())  # row-major pairs i != j
        edge_dr = ak.flatten(dr, axis=-1)[..., off_diag]
        edge_mask = ak.flatten(pair & (dr < r_c), axis=-1)[..., off_diag]
        row, col = _row_col(dr)
        edge_index = ak.concatenate(
            [ak.flatten(row, axis=-1)[..., np.newaxis, off_diag],
             ak.flatten(col, axis=-1)[..., np.newaxis, off_diag]], axis=-2)
    else:
        row, col = _row_col(dr)
        usable = pair & (row != col)  # a node is not its own neighbour
        big = ak.where(usable, dr, np.inf)
        order = ak.argsort(big, axis=-1, stable=True)[..., :knn]
        nearest = ak.values_astype(order, np.int64)
        sorted_dr = big[order]  # not yet restricted to rows of real nodes
        edge_mask = ak.flatten(np.isfinite(sorted_dr) & mask[..., np.newaxis], axis=-1)
        edge_dr = ak.flatten(ak.where(np.isfinite(sorted_dr), sorted_dr, 0.0), axis=-1)
        source = ak.flatten(_row_col(nearest)[0], axis=-1)
        target = ak.flatten(nearest, axis=-1)
        edge_index = ak.concatenate(
            [source[..., np.newaxis, :], target[..., np.newaxis, :]], axis=-2)
    edge_weight = ak.where(edge_mask, _edge_weight(edge_dr, weight=weight, r_c=r_c), 0.0)
    return ak.zip(
        {
            "nodes": values[..., :nf],
            "mask": mask,
            "adjacency": adjacency,
            "edge_index": edge_index,
            "edge_weight": ak.values_astype(edge_weight, np.float32),
            "edge_mask": edge_mask,
        },
        depth_limit=2,
    )


def _row_col(matrix: Any) -> tuple[Any, Any]:
    """Row and column index of every entry of ``matrix [..., rows, cols]`` (int64)."""
    col = ak.values_astype(ak.local_index(matrix, axis=-1), np.int64)
    row = ak.values_astype(ak.local_index(matrix, axis=-2), np.int64)[..., np.newaxis]
    return ak.broadcast_arrays(row, col)[0], col


def constituent_graph(
    constituents: ak.Array,
    jets: ak.Array,
    *,
    n: int = 50,
    r_c: float = 0.1,
    knn: int | None = None,
    features: Sequence[str] = GRAPH_NODE_FEATURES,
    weight: Weight = "delta_r",
) -> dict[str, Any]:
    """Per-jet constituent graphs with ``n`` node slots (ΔR < r_c edges, or k nearest).

    ΔR between constituents is in (η, φ) with Δφ wrapped. Nodes are the ``n`` highest-p_T
    valid constituents (:func:`~coffea_ad.features.particles.particle_list` order).

    Args:
        constituents: ``events * jets * var`` records from
            :func:`~coffea_ad.features.constituents.jet_constituents`.
        jets: ``events * jets * {eta, phi}`` aligned with ``constituents``.
        n: node slots per jet.
        r_c: ΔR radius of the radius graph and of ``adjacency`` (also the width of the
            ``"gaussian"`` weight).
        knn: if given, the edge lists hold the ``knn`` nearest neighbours of each node instead
            of the radius graph (``adjacency`` stays the radius graph).
        features: node features, names from
            :data:`~coffea_ad.features.particles.PARTICLE_FEATURES`.
        weight: edge weight: ``"delta_r"`` (ΔR), ``"gaussian"`` (exp(−ΔR²/2r_c²)) or
            ``"unit"`` (1); 0 on masked edges.

    Returns:
        dict of per-jet arrays over all events (numpy for eager input, dask-awkward for dask
        input): ``nodes [n_jets, n, F]`` float32, ``mask [n_jets, n]`` bool,
        ``adjacency [n_jets, n, n]`` float32, ``edge_index [n_jets, 2, E]`` int64,
        ``edge_weight [n_jets, E]`` float32, ``edge_mask [n_jets, E]`` bool, with
        E = n(n − 1) (radius) or n·knn (kNN).
    """
    features = tuple(features)
    for name in features:
        if name not in PARTICLE_FEATURES:
            raise UnknownNameError("particle feature", name, PARTICLE_FEATURES)
    if weight not in ("delta_r", "gaussian", "unit"):
        raise UnknownNameError("edge weight", weight, ["delta_r", "gaussian", "unit"])
    if knn is not None and not 1 <= knn < n:
        raise InvalidArgumentError(f"knn must be between 1 and n - 1 = {n - 1}, got {knn}")
    if r_c <= 0:
        raise InvalidArgumentError(f"r_c must be a positive ΔR, got {r_c}")
    record = dispatch(_graph_record, constituents, jets, label="constituent-graph", n=int(n),
                      features=features, r_c=float(r_c), knn=knn, weight=weight)
    names = ("nodes", "mask", "adjacency", "edge_index", "edge_weight", "edge_mask")
    out = dict(zip(names, _split(record, names), strict=True))
    if isinstance(out["mask"], np.ndarray):
        # a chunk without jets loses the inner sizes in awkward -> numpy: restore them
        n_edges = n * (n - 1) if knn is None else n * knn
        shapes = {"nodes": (n, len(features)), "mask": (n,), "adjacency": (n, n),
                  "edge_index": (2, n_edges), "edge_weight": (n_edges,),
                  "edge_mask": (n_edges,)}
        out = {name: value.reshape((len(value), *shapes[name])) for name, value in out.items()}
    return out


def normalized_adjacency(values: np.ndarray, mask: np.ndarray, *, eta_index: int,
                         phi_index: int, r_c: float, kind: Literal["hard", "weighted"] = "hard",
                         periodic_phi: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """``D^-1/2 A D^-1/2`` of the ΔR graph of padded particle blocks, as
    :meth:`coffea_ad.nn.graph_ae.GraphAutoencoder.normalized_adjacency` computes it (and a
    graph AE exported with its adjacency as an input expects it): ``A`` links real nodes
    with ``ΔR < r_c`` (``hard``) or weighs them by ``exp(-ΔR² / (2 r_c²))`` (``weighted``),
    self-loops included; rows and columns of padded nodes are 0.

    One compiled pass per jet over its real pairs, in float32 with the graph's operations in
    its order (so the ``hard`` kind gives the same bits as the ONNX graph; ``weighted``
    differs by the rounding of ``exp`` and of the degree sums). The [n, n] matrices are
    what a constituent graph model spends most of its ONNX Runtime time building
    elementwise; here only the real pairs are visited.

    Args:
        values: ``[n_jets, n, F]`` float32 particle blocks
            (:func:`~coffea_ad.features.particle_list`).
        mask: ``[n_jets, n]``, non-zero at real nodes.
        eta_index, phi_index: columns of η and φ (or Δη, Δφ to the jet axis) in ``values``.
        r_c: ΔR radius.
        kind: ``"hard"`` or ``"weighted"``.
        periodic_phi: wrap Δφ to [-π, π] (a raw azimuth); ``False`` for φ relative to the
            jet axis, where the wrap is the identity.
        out: ``[n_jets, n, n]`` float32 to write into (else allocated).

    Returns:
        ``[n_jets, n, n]`` float32.
    """
    if kind not in ("hard", "weighted"):
        raise UnknownNameError("adjacency kind", kind, ["hard", "weighted"])
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 3 or not (0 <= eta_index < values.shape[2]
                                and 0 <= phi_index < values.shape[2]):
        raise InvalidArgumentError(f"values must be [n_jets, n, F] with η, φ columns "
                                   f"{eta_index}, {phi_index}; found shape {values.shape}")
    mask = np.ascontiguousarray(mask)
    if mask.shape != values.shape[:2]:
        raise InvalidArgumentError(f"mask must be [n_jets, n] = {list(values.shape[:2])}, "
                                   f"found {list(mask.shape)}")
    n_jets, n = values.shape[:2]
    if out is None:
        out = np.empty((n_jets, n, n), dtype=np.float32)
    elif out.shape != (n_jets, n, n) or out.dtype != np.float32:
        raise InvalidArgumentError(f"out must be float32 {[n_jets, n, n]}, found "
                                   f"{out.dtype} {list(out.shape)}")
    _adjacency_kernel(values, mask > 0, eta_index, phi_index, np.float32(r_c * r_c),
                      np.float32(2.0 * r_c * r_c), kind == "weighted", bool(periodic_phi),
                      np.float32(2.0 * math.pi), out)
    return out


@numba.njit(cache=True)
def _adjacency_kernel(values, real, eta_index, phi_index, r2, two_r2, weighted, periodic,
                      two_pi, out):  # pragma: no cover - numba
    """Per jet: the real nodes' η, φ gathered; each row of pair weights and its degree
    (self-loop included, clamped at 1 as in the graph); ``s = 1 / sqrt(deg)`` and
    ``(s_i a_ij) s_j`` written at the real rows and columns of a zeroed block. The hard kind
    without the wrap (svj_gae's) has branch-free inner loops over contiguous rows, which
    the compiler vectorizes; its degree is an integer count (exact, as the float32 sum of
    0/1 entries in any order is)."""
    n_jets, n, _ = values.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    where = np.empty(n, dtype=np.int64)
    eta = np.empty(n, dtype=np.float32)
    phi = np.empty(n, dtype=np.float32)
    a = np.empty((n, n), dtype=np.float32)
    s = np.empty(n, dtype=np.float32)
    simple = not weighted and not periodic
    for b in range(n_jets):
        k = 0
        for i in range(n):
            if real[b, i]:
                where[k] = i
                eta[k] = values[b, i, eta_index]
                phi[k] = values[b, i, phi_index]
                k += 1
        for u in range(k):
            eta_u = eta[u]
            phi_u = phi[u]
            row = a[u]
            if simple:
                links = 0
                for v in range(k):
                    deta = eta_u - eta[v]
                    dphi = phi_u - phi[v]
                    linked = deta * deta + dphi * dphi < r2
                    row[v] = one if linked else zero
                    links += linked
                deg = np.float32(links)
            else:
                deg = zero
                for v in range(k):  # in column order, as the graph's product with the mask
                    deta = eta_u - eta[v]
                    dphi = phi_u - phi[v]
                    if periodic:
                        dphi = dphi - two_pi * np.float32(np.rint(dphi / two_pi))
                    dr2 = deta * deta + dphi * dphi
                    hard = one if dr2 < r2 else zero
                    w = np.float32(np.exp(-dr2 / two_r2)) if weighted else hard
                    row[v] = w
                    deg += w
            s[u] = one / np.float32(np.sqrt(max(deg, one)))
        out[b] = zero
        prefix = k == 0 or where[k - 1] == k - 1  # real nodes first, as particle lists are
        for u in range(k):
            s_u = s[u]
            row = a[u]
            if prefix:
                dest = out[b, u]
                for v in range(k):
                    dest[v] = (s_u * row[v]) * s[v]
            else:
                i = where[u]
                for v in range(k):
                    out[b, i, where[v]] = (s_u * row[v]) * s[v]
