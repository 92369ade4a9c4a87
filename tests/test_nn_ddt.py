"""DDT quantile map: knots equal plain numpy quantiles, the map is monotone in the value at
fixed condition, a fixed cut keeps the same background fraction at every condition, and the
ONNX nodes reproduce an independent per-row ``numpy.interp`` evaluation."""

import itertools

import numpy as np
import pytest

from coffea_ad.nn.ddt import (
    CDF_LEVELS,
    DEFAULT_LEVELS,
    SurvivalTable,
    append_to_onnx,
    fit_survival_table,
    second_condition,
    threshold_for_mistag,
)

GRID = np.linspace(5.4, 7.8, 7)


def _sample(n, seed):
    """A background whose value drifts and widens with the condition (like an nll vs log p_T)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(GRID[0], GRID[-1], n)
    v = 2.0 * (c - 6.0) + (1.0 + 0.3 * (c - 5.0)) * rng.gumbel(size=n)
    return v, c


def _reference(table: SurvivalTable, v, c):
    """Row by row: knots interpolated in c with np.interp, u by np.interp between knots,
    the documented continuations outside them."""
    u = table.u
    out = np.empty(len(v))
    for i, (vi, ci) in enumerate(zip(v, c, strict=True)):
        ci = min(max(ci, table.grid[0]), table.grid[-1])
        k = np.array([np.interp(ci, table.grid, table.knots[:, j]) for j in range(len(u))])
        s_lo = np.interp(ci, table.grid, table.slope_low)
        s_hi = np.interp(ci, table.grid, table.slope_high)
        if vi < k[0]:
            out[i] = u[0] * np.exp(s_lo * (vi - k[0]) / u[0])
        elif vi > k[-1]:
            out[i] = u[-1] + s_hi * (vi - k[-1])
        else:
            out[i] = np.interp(vi, k, u)
    return out


def test_knots_are_numpy_quantiles_per_grid_point():
    # conditions exactly on the grid: each row's tent weight is 1 for its own grid point only,
    # so the knots are the plain quantiles of that point's values
    rng = np.random.default_rng(3)
    c = np.repeat(GRID, 3000)
    v = rng.normal(c, 1.0 + 0.1 * c)
    t = fit_survival_table(v, c, grid=GRID, levels=DEFAULT_LEVELS)
    for j, g in enumerate(GRID):
        expected = np.quantile(v[c == g], DEFAULT_LEVELS, method="inverted_cdf")
        np.testing.assert_allclose(t.knots[j], expected, rtol=0, atol=1e-12)
        assert t.n_eff[j] == pytest.approx(3000)


def test_weighted_knots_match_a_sorted_cumulative_sum():
    rng = np.random.default_rng(4)
    c = np.repeat(GRID[:2], 500)
    v = rng.normal(size=1000)
    w = rng.uniform(0.1, 3.0, 1000)
    levels = (0.1, 0.5, 0.9)
    t = fit_survival_table(v, c, w, grid=GRID[:2], levels=levels)
    sel = c == GRID[0]
    order = np.argsort(v[sel])
    cw = np.cumsum(w[sel][order]) / w[sel].sum()
    # inverted CDF: the smallest value whose cumulative weight reaches the level
    expected = [v[sel][order][np.argmax(cw >= q)] for q in levels]
    np.testing.assert_allclose(t.knots[0], expected, atol=1e-12)


def test_fixed_cut_keeps_ten_percent_at_every_condition():
    v, c = _sample(60_000, 1)
    t = fit_survival_table(v, c, grid=GRID)
    cut = threshold_for_mistag(0.10)
    assert cut == pytest.approx(np.log(10.0))
    # on an independent sample, in condition bins whose edges are not grid points (outside
    # the grid the map is that of its end points: the grid must span the conditions)
    v2, c2 = _sample(60_000, 2)
    u2 = t(v2, c2)
    edges = np.linspace(GRID[0], GRID[-1], 9)
    for lo, hi in itertools.pairwise(edges):
        s = (c2 >= lo) & (c2 < hi)
        f = np.mean(u2[s] > cut)
        # binomial error of this bin plus that of the calibration's ~2 bins of statistics
        sigma = np.sqrt(0.09 / s.sum() + 0.09 / (2 * s.sum()))
        assert abs(f - 0.10) < 4 * sigma, (lo, hi, f)
    # against plain numpy: the 90 % quantile of the values in a narrow window around each
    # interior grid point is mapped to a survival fraction of 0.10 (binomial error of the window)
    for g in GRID[1:-1]:
        window = np.abs(c2 - g) < 0.05
        q90 = np.quantile(v2[window], 0.9)
        eps = np.exp(-t(np.array([q90]), np.array([g]))[0])
        n_cal = np.sum(np.abs(c - g) < GRID[1] - GRID[0])  # the calibration's tent window
        assert abs(eps - 0.10) < 4 * np.sqrt(0.09 / window.sum() + 0.09 / n_cal), g
    # the raw value cut at its overall 90 % quantile is far from flat (the test has teeth)
    raw = np.quantile(v, 0.9)
    raw_f = [np.mean(v2[(c2 >= lo) & (c2 < hi)] > raw) for lo, hi in itertools.pairwise(edges)]
    assert max(raw_f) - min(raw_f) > 0.2


@pytest.fixture(scope="module")
def table_5():
    v, cc = _sample(50_000, 5)
    return fit_survival_table(v, cc, grid=GRID)


@pytest.mark.parametrize("c", [5.0, 5.4, 6.13, 7.0, 7.8, 9.0])
def test_monotone_in_value_at_fixed_condition(c, table_5):
    t = table_5
    x = np.linspace(-20, 40, 20001)
    u = t(x, np.full_like(x, c))
    resolvable = u > 1e-300  # the low continuation decays to 0; compare where it is nonzero
    assert np.all(np.diff(u[resolvable]) > 0)
    assert np.all(u >= 0)
    # continuous: no step larger than the steepest slope allows
    max_slope = max(t.slope_low.max() * 1.01, np.max(np.diff(t.u)[None] / np.diff(t.knots, axis=1)),
                    t.slope_high.max())
    assert np.max(np.diff(u)) <= max_slope * (x[1] - x[0]) * 1.0001
    # the ranking within a condition slice is the value's, so its AUC is unchanged
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 2, 300), rng.normal(1, 2, 300)
    ua, ub = t(a, np.full(300, c)), t(b, np.full(300, c))
    assert np.mean(ub[:, None] > ua[None, :]) == pytest.approx(np.mean(b[:, None] > a[None, :]))


def test_numpy_map_matches_a_row_by_row_reference():
    v, c = _sample(30_000, 6)
    t = fit_survival_table(v, c, grid=GRID)
    v2, c2 = _sample(2_000, 7)
    v2 = np.r_[v2, -50.0, 60.0]  # far below the first and above the last knot
    c2 = np.r_[c2, 6.0, 4.0]
    np.testing.assert_allclose(t(v2, c2), _reference(t, v2, c2), rtol=1e-10, atol=1e-300)
    # round trip through the contract's JSON form (rounded to 1e-6)
    t2 = SurvivalTable.from_dict(t.to_dict())
    np.testing.assert_allclose(t2(v2, c2), t(v2, c2), rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_one_line_errors():
    v, c = _sample(1000, 8)
    with pytest.raises(ValueError, match="uniformly spaced"):
        fit_survival_table(v, c, grid=[5.0, 6.0, 8.0])
    with pytest.raises(ValueError, match="levels must increase"):
        fit_survival_table(v, c, grid=GRID, levels=(0.5, 0.4, 0.9))
    with pytest.raises(ValueError, match="too few"):
        fit_survival_table(v[:50], c[:50], grid=GRID)


def _sample2(n, seed):
    """A second variable m whose distribution moves with c, and a value that depends on both."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(GRID[0], GRID[-1], n)
    m = 0.5 * c + rng.normal(size=n)
    v = (c - 6.0) + 1.5 * (m - 0.5 * c) + (1.0 + 0.2 * (c - 5.0)) * rng.gumbel(size=n)
    return v, c, m


def _toy_model(columns):
    """An ONNX stand-in: features [N, columns]; nll = the last column; an old score = 2 nll."""
    from onnx import TensorProto, helper

    col = helper.make_tensor("col", TensorProto.INT64, [], [columns - 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    g = helper.make_graph(
        [helper.make_node("Gather", ["features", "col"], ["nll"], axis=1),
         helper.make_node("Mul", ["nll", "two"], ["score"])],
        "toy", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", columns])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("nll", TensorProto.FLOAT, ["batch"])], [col, two])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_second_condition_flattens_both_and_exports():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    v, c, m = _sample2(80_000, 11)
    t2 = fit_survival_table(m, c, grid=GRID, levels=CDF_LEVELS)
    f = second_condition(t2, m, c)
    # the second condition is m's quantile at c: uniform in [0, 1) at every c
    assert np.histogram(f, bins=5, range=(0, 1))[0] == pytest.approx(16_000, rel=0.04)
    t = fit_survival_table(v, c, cond2=f, grid=GRID, grid2=np.linspace(0, 1, 5),
                           levels=DEFAULT_LEVELS[:-2])
    v2, c2, m2 = _sample2(60_000, 12)
    u2 = t(v2, c2, second_condition(t2, m2, c2))
    cut = threshold_for_mistag(0.10)
    # flat in m at fixed c, and in c: 3 x 3 cells of the independent sample
    for a, b in itertools.pairwise(np.linspace(GRID[0], GRID[-1], 4)):
        sel = (c2 >= a) & (c2 < b)
        for lo, hi in itertools.pairwise(np.quantile(m2[sel], [0, 1 / 3, 2 / 3, 1])):
            cell = sel & (m2 >= lo) & (m2 <= hi)
            frac = np.mean(u2[cell] > cut)
            assert abs(frac - 0.10) < 4 * np.sqrt(0.09 / cell.sum() * 3), (a, lo, frac)
    # the p_T-only map leaves the m dependence (the test has teeth)
    t1 = fit_survival_table(v, c, grid=GRID)
    u1 = t1(v2, c2)
    lo_m, hi_m = m2 < np.quantile(m2, 0.2), m2 > np.quantile(m2, 0.8)
    assert np.mean(u1[hi_m] > cut) - np.mean(u1[lo_m] > cut) > 0.15
    # ONNX: features (c, m, value); the second map reads column 1
    x = np.stack([c2[:3000], m2[:3000], v2[:3000]], 1).astype(np.float32)
    out = append_to_onnx(_toy_model(3), t, second=(t2, 1))
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    (score,) = sess.run(["score"], {"features": x})
    xd = x.astype(np.float64)
    ref = t(xd[:, 2], xd[:, 0], second_condition(t2, xd[:, 1], xd[:, 0]))
    np.testing.assert_allclose(score, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="second"):
        append_to_onnx(_toy_model(3), t)


def test_onnx_nodes_reproduce_the_reference():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _toy_model(2)
    v, c = _sample(30_000, 9)
    t = fit_survival_table(v, c, grid=GRID)
    out = append_to_onnx(model, t)
    assert [o.name for o in out.graph.output] == ["score", "nll"]
    assert not any(n.op_type == "Mul" and "two" in n.input for n in out.graph.node)
    v2, c2 = _sample(3_000, 10)
    x = np.stack([np.r_[c2, 6.0, 9.0], np.r_[v2, -50.0, 60.0]], 1).astype(np.float32)
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    score, nll = sess.run(["score", "nll"], {"features": x})
    np.testing.assert_array_equal(nll, x[:, 1])
    ref = _reference(t, x[:, 1].astype(np.float64), x[:, 0].astype(np.float64))
    np.testing.assert_allclose(score, ref, rtol=2e-5, atol=1e-6)
