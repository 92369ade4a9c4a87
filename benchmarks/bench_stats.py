"""Distance correlation and bump-hunt fit timings, ours vs references, side by side.

Run: ``python benchmarks/bench_stats.py [--repeats 5]``

1. ``coffea_ad.stats.distance_correlation`` (exact, O(n log n), numba) against the O(n^2)
   pair-matrix computation of the DisCo loss (Kasieczka and Shih, arXiv:2001.05310) in numpy,
   on the same events, for growing n; the O(n^2) reference is skipped where its three n x n
   float64 matrices would pass ``--max-ref-gib``.
2. ``fit_signal_plus_background`` (whitened coordinates) against the same likelihood fitted
   directly in the dijet-function parameters (p1, p2, p3) by iminuit, over toys: fraction of
   valid minima and the pull width of mu, the reason for the reparametrisation.

Medians over ``--repeats`` runs; single-threaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from coffea_ad.stats import (
    distance_correlation,
    fit_signal_plus_background,
    gaussian_signal,
)
from coffea_ad.stats.bumphunt import _shape_integrals


def _dcor_pairs(x: np.ndarray, y: np.ndarray) -> float:
    """DisCo-style O(n^2): doubly centred |x_i - x_j| and |y_i - y_j| matrices."""
    a = np.abs(x[:, None] - x[None, :])
    b = np.abs(y[:, None] - y[None, :])
    a -= a.mean(0)[None, :] + a.mean(1)[:, None] - a.mean()
    b -= b.mean(0)[None, :] + b.mean(1)[:, None] - b.mean()
    ab, aa, bb = (a * b).mean(), (a * a).mean(), (b * b).mean()
    return float(np.sqrt(ab / np.sqrt(aa * bb)))


def _median_time(fn, repeats: int) -> tuple[float, float]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_dcor(repeats: int, max_ref_gib: float) -> None:
    rng = np.random.default_rng(0)
    distance_correlation(rng.normal(size=10), rng.normal(size=10))  # numba compile
    print("distance correlation (seconds, median)")
    print(f"{'n':>9} {'ours':>9} {'O(n^2)':>9} {'ratio':>8} {'|diff|':>9}")
    for n in (1_000, 4_000, 10_000, 100_000, 1_000_000):
        x = rng.normal(size=n)
        y = 0.3 * x**2 + rng.normal(size=n)
        t_ours, d_ours = _median_time(lambda x=x, y=y: distance_correlation(x, y), repeats)
        if 3 * n * n * 8 / 2**30 <= max_ref_gib:
            t_ref, d_ref = _median_time(lambda x=x, y=y: _dcor_pairs(x, y), repeats)
            print(f"{n:>9} {t_ours:>9.4f} {t_ref:>9.4f} {t_ref / t_ours:>8.1f} "
                  f"{abs(d_ours - d_ref):>9.1e}")
        else:
            print(f"{n:>9} {t_ours:>9.4f} {'(memory)':>9} {'':>8} {'':>9}")


def _direct_fit(n: np.ndarray, edges: np.ndarray, sig: np.ndarray, start: np.ndarray):
    """The same S+B likelihood minimised directly in (mu, norm, p1, p2, p3)."""
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    xe = edges / 13000.0

    def cdf(_xe, mu, norm, p1, p2, p3):
        integ = _shape_integrals(xe, np.array([p1, p2, p3]))
        return np.concatenate([[0.0], np.cumsum(norm * integ / integ.sum() + mu * sig)])

    names = ["mu", "norm", "p1", "p2", "p3"]
    m = Minuit(ExtendedBinnedNLL(n, xe, cdf, name=names), 0.0, n.sum(), *start, name=names)
    m.limits["norm"] = (0, None)
    m.migrad()
    m.hesse()
    return m


def bench_fit(repeats: int, toys: int) -> None:
    edges = np.linspace(1500.0, 5000.0, 36)
    integ = _shape_integrals(edges / 13000.0, np.array([10.0, 5.0, 0.2]))
    bkg = 2e5 * integ / integ.sum()
    sig = gaussian_signal(edges, mass=3000.0, width=150.0)
    rng = np.random.default_rng(1)
    data = [rng.poisson(bkg + 300 * sig) for _ in range(toys)]
    ours_valid, ours_pull, ref_valid, ref_pull = 0, [], 0, []

    def run_ours():
        nonlocal ours_valid
        ours_valid, ours_pull[:] = 0, []
        for n in data:
            r = fit_signal_plus_background(n, edges, mass=3000.0, width=150.0)
            ours_valid += r.valid
            ours_pull.append((r.mu - 300) / r.mu_err)

    def run_ref():
        nonlocal ref_valid
        ref_valid, ref_pull[:] = 0, []
        for n in data:
            m = _direct_fit(n, edges, sig, np.array([10.0, 5.0, 0.0]))
            ref_valid += m.valid
            ref_pull.append((m.values["mu"] - 300) / m.errors["mu"])

    t_ours, _ = _median_time(run_ours, repeats)
    t_ref, _ = _median_time(run_ref, repeats)
    print(f"\nS+B fit over {toys} toys (mu_true = 300, 35 bins)")
    print(f"{'':>22} {'s/fit':>8} {'valid':>7} {'pull mean':>10} {'pull std':>9}")
    # ours also runs the background-only fit (needed for q0); the direct one fits S+B only
    for name, t, v, p in (("ours (B-only + S+B)", t_ours, ours_valid, ours_pull),
                          ("direct S+B, p1..p3", t_ref, ref_valid, ref_pull)):
        print(f"{name:>22} {t / toys:>8.4f} {v:>4}/{toys:<3}{np.mean(p):>10.3f} "
              f"{np.std(p):>9.3f}")
    print(f"time ratio direct/ours: {t_ref / t_ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--toys", type=int, default=50)
    parser.add_argument("--max-ref-gib", type=float, default=3.0)
    args = parser.parse_args()
    bench_dcor(args.repeats, args.max_ref_gib)
    bench_fit(max(1, args.repeats // 2), args.toys)


if __name__ == "__main__":
    main()
