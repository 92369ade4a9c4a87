"""Designed decorrelated tagger (DDT): a per-p_T quantile map that makes a score's background
mistag rate the same at every jet p_T.

A density score conditioned on jet p_T still has a QCD distribution that drifts with p_T (the
flow's fit is not perfect, and the ln-density of a sharper or broader conditional shape moves
as a whole). A fixed threshold on such a score then tags more QCD jets at some p_T than at
others, which sculpts m_T and biases an ABCD estimate whose second variable (|Δη_jj| at fixed
m_T) selects harder jets. The CMS recipe (Dolen et al., "Thinking outside the ROCs: designing
decorrelated taggers", arXiv:1603.00027) measures, on an independent background sample, the
quantiles of the score as a function of the kinematic variable and cuts on the score's
position relative to them.

Here the map is ``u = -ln(ε)`` with ε the background survival fraction of the value *at the
jet's condition c* (log p_T): ``u > ln(10)`` keeps 10 % of the background at every c. The
map is monotone in the value at fixed c, so the ranking within a p_T slice (and any AUC in a
slice) is unchanged. It is piecewise linear between quantile knots measured at a uniform grid
of c (tent-kernel weighted quantiles, linearly interpolated in c), continued beyond the last
knot with the last secant's slope and below the first with an exponential that reaches 0.
The map is appended to an ONNX graph with plain operators (Gather, Clip, MatMul, Relu, Exp)
by :func:`append_to_onnx`, so a processor cutting ``score > ln(1/ε)`` needs no extra input.

A second condition makes the mistag flat in a second variable too (for the SVJ flow: ρ, the
jet mass; at fixed m_T, small |Δη_jj| selects events whose subleading jet is heavier). It
enters as its own background quantile at the jet's p_T (:func:`second_condition`, itself a map
of this kind), so that a uniform grid in [0, 1] is equally filled at every p_T; the knots are
then interpolated bilinearly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coffea_ad.errors import InvalidArgumentError

__all__ = ["CDF_LEVELS", "DEFAULT_LEVELS", "SurvivalTable", "append_to_onnx", "fit_survival_table",
           "second_condition", "threshold_for_mistag"]

#: CDF levels τ of the knots: dense where working points live (ε = 10 % ... 0.2 %)
DEFAULT_LEVELS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85,
                  0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.998)
#: CDF levels of a second condition's map (its quantile only needs to be smooth, not deep)
CDF_LEVELS = tuple(round(float(q), 4) for q in np.linspace(0.02, 0.98, 49))
#: the smallest gap between neighbouring knots (float32 graphs divide by it)
MIN_GAP = 1e-4


def threshold_for_mistag(mistag: float) -> float:
    """The transformed score's cut that keeps a background fraction ``mistag``: ``-ln ε``."""
    return float(-np.log(mistag))


@dataclass
class SurvivalTable:
    """Quantile knots of a background score versus a condition.

    Attributes:
        grid: ``[J]`` uniformly spaced condition values (e.g. log p_T).
        levels: ``[K]`` increasing CDF levels τ_k; ``u_k = -ln(1 - τ_k)``.
        knots: ``[G, K]`` the value's τ_k quantile at each grid node (strictly increasing
            along k); ``G = J`` or, with a second condition, ``G = J × J2`` (row ``j J2 + i``).
        slope_low, slope_high: ``[G]`` du/dvalue continued below the first / above the last
            knot.
        n_eff: ``[G]`` effective number of background entries behind each node.
        grid2: ``[J2]`` uniformly spaced values of an optional second condition (bilinear
            interpolation: a convex combination of increasing knots stays increasing).
    """

    grid: np.ndarray
    levels: np.ndarray
    knots: np.ndarray
    slope_low: np.ndarray
    slope_high: np.ndarray
    n_eff: np.ndarray
    grid2: np.ndarray | None = None

    @property
    def u(self) -> np.ndarray:
        return -np.log1p(-np.asarray(self.levels, np.float64))

    @staticmethod
    def _tent(grid: np.ndarray, cond: np.ndarray) -> np.ndarray:
        c = np.clip(np.asarray(cond, np.float64), grid[0], grid[-1])
        return np.maximum(0.0, 1.0 - np.abs(c[:, None] - grid[None, :]) / (grid[1] - grid[0]))

    def weights(self, cond: np.ndarray, cond2: np.ndarray | None = None) -> np.ndarray:
        """``[N, G]`` tent weights of the (clipped) conditions on the grid (rows sum to 1)."""
        w = self._tent(self.grid, cond)
        if self.grid2 is None:
            return w
        if cond2 is None:
            raise InvalidArgumentError("SurvivalTable: this table needs the second condition")
        w2 = self._tent(self.grid2, cond2)
        return (w[:, :, None] * w2[:, None, :]).reshape(len(w), -1)

    def __call__(self, value: np.ndarray, cond: np.ndarray,
                 cond2: np.ndarray | None = None) -> np.ndarray:
        """``u(value | cond[, cond2])`` in float64 (the same formula as the ONNX nodes)."""
        v = np.asarray(value, np.float64)
        w = self.weights(cond, cond2)
        k = w @ self.knots
        u = self.u
        t = np.clip((v[:, None] - k[:, :-1]) / (k[:, 1:] - k[:, :-1]), 0.0, 1.0)
        base = u[0] + t @ np.diff(u) + (w @ self.slope_high) * np.maximum(v - k[:, -1], 0.0)
        low = np.exp((w @ self.slope_low) * np.minimum(v - k[:, 0], 0.0) / u[0])
        return base * low

    def to_dict(self) -> dict[str, Any]:
        out = {"grid": np.round(self.grid, 6).tolist(),
               "levels": list(map(float, self.levels)),
               "knots": np.round(self.knots, 6).tolist(),
               "slope_low": np.round(self.slope_low, 6).tolist(),
               "slope_high": np.round(self.slope_high, 6).tolist(),
               "n_eff": np.round(self.n_eff, 1).tolist()}
        if self.grid2 is not None:
            out["grid2"] = np.round(self.grid2, 6).tolist()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurvivalTable:
        return cls(**{k: np.asarray(d[k], np.float64) for k in
                      ("grid", "levels", "knots", "slope_low", "slope_high", "n_eff", "grid2")
                      if k in d})


def fit_survival_table(value: np.ndarray, cond: np.ndarray, weights: np.ndarray | None = None,
                       *, grid: Sequence[float], levels: Sequence[float] = DEFAULT_LEVELS,
                       tail_knots: int = 4, iterations: int = 3,
                       cond2: np.ndarray | None = None,
                       grid2: Sequence[float] | None = None) -> SurvivalTable:
    """Measure the knots on a background sample.

    Each grid point's quantiles are weighted quantiles (``numpy.quantile``, inverted CDF) of
    ``value`` with weights ``weights × tent(c)``, the tent being the linear interpolation
    weight the map applies (conditions outside the grid count as its end points). They are
    then refined so that, in each window, the weighted fraction of entries below the
    *interpolated* knot is τ (the value drifts with c inside a window; see the loop).

    Args:
        value: ``[N]`` the background score (e.g. the flow's nll).
        cond: ``[N]`` the condition (e.g. log p_T).
        weights: ``[N]`` event weights (``None``: 1).
        grid: uniformly spaced condition values, at least 2.
        levels: increasing CDF levels in (0, 1).
        tail_knots: the slope above the last knot is the secant over this many last knots.
        iterations: passes that correct the knots for the value's drift inside each window.
        cond2, grid2: an optional second condition and its uniform grid (tent weights are
            the product of the two).

    Returns:
        The :class:`SurvivalTable`.
    """
    value = np.asarray(value, np.float64)
    cond = np.asarray(cond, np.float64)
    weights = np.ones_like(value) if weights is None else np.asarray(weights, np.float64)
    g1 = np.asarray(grid, np.float64)
    lv = np.asarray(levels, np.float64)
    if (cond2 is None) != (grid2 is None):
        raise InvalidArgumentError("fit_survival_table: give both cond2 and grid2, or neither")
    for g in (g1, np.asarray(grid2 if grid2 is not None else [0.0, 1.0], np.float64)):
        if g.ndim != 1 or len(g) < 2 or not np.allclose(np.diff(g), g[1] - g[0]) \
                or g[1] <= g[0]:
            raise InvalidArgumentError(f"fit_survival_table: grid must be increasing and uniformly "
                             f"spaced (at least 2 points), found {g.tolist()}")
    g2 = None if grid2 is None else np.asarray(grid2, np.float64)
    c2 = np.zeros_like(cond) if cond2 is None else np.asarray(cond2, np.float64)
    if np.any(np.diff(lv) <= 0) or lv[0] <= 0 or lv[-1] >= 1 or len(lv) < 3:
        raise InvalidArgumentError(f"fit_survival_table: levels must increase strictly inside (0, 1), "
                         f"at least 3, found {lv.tolist()}")
    if not (value.shape == cond.shape == weights.shape == c2.shape) or value.ndim != 1:
        raise InvalidArgumentError(f"fit_survival_table: value, conditions and weights must be 1-d of "
                         f"one length, found {value.shape}, {cond.shape}, {c2.shape}, "
                         f"{weights.shape}")
    finite = np.isfinite(value) & np.isfinite(cond) & np.isfinite(c2)
    value, cond, c2, weights = value[finite], cond[finite], c2[finite], weights[finite]
    nodes = len(g1) * (1 if g2 is None else len(g2))
    table = SurvivalTable(g1, lv, np.zeros((nodes, len(lv))), np.zeros(nodes),
                          np.zeros(nodes), np.zeros(nodes), g2)
    tent = table.weights(cond, c2 if g2 is not None else None)
    u = table.u
    m = max(2, min(tail_knots, len(lv)))
    local = []
    for j in range(nodes):
        wj = weights * tent[:, j]
        sel = np.flatnonzero(wj > 0)
        if len(sel) < 1.0 / (1.0 - lv[-1]):
            where = f"{g1[j]:.4g}" if g2 is None else \
                f"({g1[j // len(g2)]:.4g}, {g2[j % len(g2)]:.4g})"
            raise InvalidArgumentError(f"fit_survival_table: {len(sel)} entries near grid point "
                             f"{where}, too few for the level {lv[-1]}")
        local.append((sel, wj[sel]))
        table.n_eff[j] = wj[sel].sum() ** 2 / (wj[sel] ** 2).sum()
    for it in range(iterations + 1):
        # first pass: the window's plain quantiles. Later passes move each entry to the grid
        # point along the current interpolated knot (v - N_k(c) + K_jk): a value that drifts
        # with c across the window (strongly at the ends of the grid, where the window is
        # one-sided) then no longer biases the knot, and at the fixed point the tent-weighted
        # fraction below the interpolated knot is exactly τ_k
        interp = tent @ table.knots if it else None
        new = np.empty_like(table.knots)
        for j, (sel, wj) in enumerate(local):
            for k, q in enumerate(lv):
                shifted = value[sel] if interp is None else \
                    value[sel] - interp[sel, k] + table.knots[j, k]
                new[j, k] = np.quantile(shifted, q, weights=wj, method="inverted_cdf")
        for i in range(1, new.shape[1]):  # ties (a discrete value) would divide by zero
            new[:, i] = np.maximum(new[:, i], new[:, i - 1] + MIN_GAP)
        table.knots = new
    kn = table.knots
    table.slope_low = (u[1] - u[0]) / (kn[:, 1] - kn[:, 0])
    table.slope_high = (u[-1] - u[-m]) / (kn[:, -1] - kn[:, -m])
    return table


def second_condition(table: SurvivalTable, x: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """A second variable as a condition: its background CDF at the first condition,
    ``F = 1 - exp(-u(x | cond))`` in [0, 1) (e.g. ρ's quantile among QCD jets of the same
    p_T), so that a uniform grid over F is equally populated at every p_T."""
    return -np.expm1(-table(x, cond))


def _map_nodes(g, table: SurvivalTable, value: str, cond: str, cond2: str | None,
               output: str, prefix: str) -> None:
    """Append ``output = u(value | cond[, cond2])`` (tensors ``[N]``) to graph ``g``."""
    from onnx import helper, numpy_helper

    def const(name: str, array, dtype=np.float32) -> str:
        full = f"{prefix}_{name}"
        g.initializer.append(numpy_helper.from_array(np.asarray(array, dtype), full))
        return full

    def t(name: str) -> str:
        return f"{prefix}_{name}"

    n = helper.make_node
    u = table.u
    k = table.knots
    one, zero, axis1 = const("one", 1.0), const("zero", 0.0), const("axis1", [1], np.int64)
    nodes = []

    def tent(cond_name: str, grid: np.ndarray, tag: str) -> str:
        nodes.extend([
            n("Clip", [cond_name, const(f"{tag}min", grid[0]), const(f"{tag}max", grid[-1])],
              [t(f"{tag}c")]),
            n("Unsqueeze", [t(f"{tag}c"), axis1], [t(f"{tag}c2")]),
            n("Sub", [t(f"{tag}c2"), const(f"{tag}grid", grid)], [t(f"{tag}d")]),
            n("Abs", [t(f"{tag}d")], [t(f"{tag}ad")]),
            n("Mul", [t(f"{tag}ad"), const(f"{tag}inv_h", 1.0 / (grid[1] - grid[0]))],
              [t(f"{tag}r")]),
            n("Sub", [one, t(f"{tag}r")], [t(f"{tag}q")]),
            n("Relu", [t(f"{tag}q")], [t(f"{tag}w")]),          # [N, J] tent weights
        ])
        return t(f"{tag}w")

    w = tent(cond, table.grid, "a")
    if table.grid2 is not None:
        if cond2 is None:
            raise InvalidArgumentError("append_to_onnx: this table needs a second condition")
        w2 = tent(cond2, table.grid2, "b")
        nodes.extend([
            n("Unsqueeze", [w, const("axis2", [2], np.int64)], [t("wa3")]),   # [N, J, 1]
            n("Unsqueeze", [w2, axis1], [t("wb3")]),                           # [N, 1, J2]
            n("Mul", [t("wa3"), t("wb3")], [t("wab")]),
            n("Reshape", [t("wab"), const("shape", [0, -1], np.int64)], [t("w")]),
        ])
        w = t("w")
    nodes.extend([
        n("MatMul", [w, const("knots_lo", k[:, :-1])], [t("nlo")]),        # [N, K-1]
        n("MatMul", [w, const("knots_hi", k[:, 1:])], [t("nhi")]),
        n("Unsqueeze", [value, axis1], [t("v2")]),
        n("Sub", [t("v2"), t("nlo")], [t("num")]),
        n("Sub", [t("nhi"), t("nlo")], [t("den")]),
        n("Div", [t("num"), t("den")], [t("t")]),
        n("Clip", [t("t"), zero, one], [t("tc")]),
        n("MatMul", [t("tc"), const("du", np.diff(u))], [t("lin")]),      # [N]
        n("MatMul", [w, const("knots_first", k[:, 0])], [t("n0")]),
        n("MatMul", [w, const("knots_last", k[:, -1])], [t("nk")]),
        n("MatMul", [w, const("slope_low", table.slope_low)], [t("slo")]),
        n("MatMul", [w, const("slope_high", table.slope_high)], [t("shi")]),
        n("Sub", [value, t("nk")], [t("above")]),
        n("Relu", [t("above")], [t("above_pos")]),
        n("Mul", [t("shi"), t("above_pos")], [t("hi")]),
        n("Add", [t("lin"), const("u0", u[0])], [t("base0")]),
        n("Add", [t("base0"), t("hi")], [t("base")]),
        n("Sub", [value, t("n0")], [t("below")]),
        n("Min", [t("below"), zero], [t("below_neg")]),
        n("Mul", [t("slo"), t("below_neg")], [t("lo_arg0")]),
        n("Div", [t("lo_arg0"), t("u0")], [t("lo_arg")]),
        n("Exp", [t("lo_arg")], [t("low")]),
        n("Mul", [t("base"), t("low")], [output]),
    ])
    g.node.extend(nodes)


def append_to_onnx(model, table: SurvivalTable, *, value: str = "nll",
                   input_name: str = "features", cond_column: int = 0, output: str = "score",
                   second: tuple[SurvivalTable, int] | None = None):
    """Append ``u(value | input[:, cond_column])`` to an ONNX model as output ``output``.

    With ``second = (table2, column)`` the map's second condition is
    :func:`second_condition` of ``input[:, column]`` (table2 maps that variable versus the
    first condition). An existing output named ``output`` is renamed away and pruned with
    what only it needed, so the model keeps its other outputs. Returns a new, checked
    ``onnx.ModelProto``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if (table.grid2 is None) != (second is None):
        raise InvalidArgumentError("append_to_onnx: give `second` exactly when the table has grid2")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    old = f"_{output}_before_ddt"
    for node in g.node:
        node.output[:] = [old if o == output else o for o in node.output]
        node.input[:] = [old if i == output else i for i in node.input]
    kept_outputs = [o for o in g.output if o.name != output]
    del g.output[:]
    g.output.extend(kept_outputs)

    def column(index: int, name: str) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(index, np.int64), name + "_i"))
        g.node.append(helper.make_node("Gather", [input_name, name + "_i"], [name], axis=1))
        return name

    cond = column(cond_column, "ddt_cond")
    cond2 = None
    if second is not None:
        table2, col2 = second
        _map_nodes(g, table2, column(col2, "ddt_x2"), cond, None, "ddt_u2", "ddt2")
        g.initializer.append(numpy_helper.from_array(np.asarray(1.0, np.float32), "ddt_cdf_one"))
        g.node.extend([helper.make_node("Neg", ["ddt_u2"], ["ddt_mu2"]),
                       helper.make_node("Exp", ["ddt_mu2"], ["ddt_s2"]),
                       helper.make_node("Sub", ["ddt_cdf_one", "ddt_s2"], ["ddt_cond2"])])
        cond2 = "ddt_cond2"
    _map_nodes(g, table, value, cond, cond2, output, "ddt")
    g.output.insert(0, helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch"]))
    # prune what only fed the replaced output (keeps the graph small and its outputs exact)
    needed = {o.name for o in g.output}
    keep = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    used_inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(used_inits)
    onnx.checker.check_model(model)
    return model
