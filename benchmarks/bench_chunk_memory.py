"""Memory and system time of the SVJ chain with and without the collection before each chunk.

Each side runs in its own fresh process (spawned), which makes ``--passes`` passes of the
iterative executor over the same generated files (those of ``bench_chain.py``, cached in
``--workdir``) with the dense-AE chain and measures per pass: the event rate, the system
CPU time (the kernel handing out and clearing fresh pages), the page faults and the resident
size at the end of the pass. "without" replaces :func:`coffea_ad.execution.memory.
collect_before_chunk` by a no-op in its process, i.e. the chain as it was before: chunks'
arrays then wait for Python's rare full collections. The two sides alternate ``--rounds``
times; the first pass of each process (imports, numba, ONNX session) is left out of the
medians.

    python benchmarks/bench_chunk_memory.py --events 40000 --events-per-file 20000

Target: none of its own; it shows why the Dask 2-worker efficiency in ``bench_chain.py``
depends on it (docs/dask.md, "Chunk memory").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/onnxruntime are imported

import argparse
import multiprocessing
import resource
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Missing cross-reference index")
warnings.filterwarnings("ignore", message=".*already exists")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def passes(fileset: dict[str, Any], model: str, n_passes: int, collect: bool,
           chunksize: int) -> list[dict[str, float]]:
    """In this (fresh) process: ``n_passes`` iterative runs of the dense chain."""
    warnings.filterwarnings("ignore", message="Missing cross-reference index")
    warnings.filterwarnings("ignore", message=".*already exists")
    from coffea_ad.execution import provenance, run_processor
    from coffea_ad.processors.svj import SVJProcessor

    if not collect:
        provenance.collect_before_chunk = lambda: None  # the chain before the collection
    chain = SVJProcessor(model, tag_threshold=0.5, scorer_options={"intra_op_threads": 1})
    rows = []
    for _ in range(n_passes):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = run_processor(fileset, chain, chunksize=chunksize, executor="iterative")
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"rate": out["run_info"]["entries_processed"] / wall,
                     "sys": r1.ru_stime - r0.ru_stime, "user": r1.ru_utime - r0.ru_utime,
                     "kfaults": (r1.ru_minflt - r0.ru_minflt) / 1e3, "rss": _rss_mb()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--events-per-file", type=int, default=20000)
    parser.add_argument("--replicas", type=int, default=2,
                        help="process each generated dataset this many times per pass")
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=7, help="passes per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coffea_ad_bench"))
    args = parser.parse_args()

    from bench_chain import prepare

    args.workdir.mkdir(parents=True, exist_ok=True)
    generated, model = prepare(args.workdir, args.events, args.events_per_file, args.seed)
    fileset = {f"{name}_{k}": entry for k in range(args.replicas)
               for name, entry in generated.items()}
    n_events = sum(d["metadata"]["nevents"] for d in fileset.values())
    print(f"dense-AE SVJ chain, iterative executor, chunk size {args.chunksize}, "
          f"{n_events} events per pass; {args.rounds} fresh processes per side x "
          f"{args.passes} passes (the first pass of each left out)")
    results: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    ctx = multiprocessing.get_context("spawn")
    for _ in range(args.rounds):
        for side in ("with", "without"):
            with ctx.Pool(1) as pool:
                rows = pool.apply(passes, (fileset, str(model), args.passes, side == "with",
                                           args.chunksize))
            results[side] += rows[1:]
    print(f"{'collection':<11} {'ev/s':>8} {'sys s/pass':>18} {'kfaults/pass':>14} "
          f"{'RSS MB':>16}   (median, min..max)")
    med: dict[str, dict[str, float]] = {}
    for side, rows in results.items():
        med[side] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}

        def span(key: str, fmt: str, rows: list[dict[str, float]] = rows) -> str:
            values = [r[key] for r in rows]
            return (f"{statistics.median(values):{fmt}} ({min(values):{fmt}}.."
                    f"{max(values):{fmt}})")

        print(f"{side:<11} {med[side]['rate']:8.0f} {span('sys', '.2f'):>18} "
              f"{span('kfaults', '.0f'):>14} {span('rss', '.0f'):>16}")
    print(f"with / without: rate {med['with']['rate'] / med['without']['rate']:.2f}, "
          f"system time {med['with']['sys'] / med['without']['sys']:.2f}, "
          f"resident size {med['with']['rss'] / med['without']['rss']:.2f}")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
