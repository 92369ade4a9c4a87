"""Throughput of the full chain vs a read-only pass, and Dask parallel efficiency.

On the same generated PFNano-format files (Pythia8 + FastJet, made once and cached):

1. read-only: coffea Runner (iterative, this process) over the files with a processor that
   materializes exactly the branches the SVJ processor reads (found with NanoEvents' access
   log, and checked to be the same set), through the same NanoEvents, and nothing else;
2. full chain: the same Runner with the SVJ processor: NanoEvents, jet->constituent links,
   substructure features, ONNX Runtime scoring of every AK8 jet (the dense AE of the demo,
   trained for a few epochs here), m_T, histogram fill;
3. the full chain on a Dask LocalCluster with 1 worker and with 2 workers (1 thread each);
   parallel efficiency = rate(2 workers) / (2 x rate(1 worker)).

The two sides of each comparison run alternately, ``--repeats`` times each after a warm-up
(numba compilation, ONNX session creation), and the medians are compared. Targets (scoring
must not dominate the read, and two workers should nearly double the rate): full chain
≥ 0.5 x read-only; efficiency ≥ 85 %.

    python benchmarks/bench_chain.py --events 4000 --replicas 4 --repeats 3
    python benchmarks/bench_chain.py --events 4000 --replicas 4 --repeats 3 --chunksize 500

The default chunk size is the one users get (``coffea-ad run`` / ``run_processor``: 100 000,
i.e. whole 1000-event files here); ``--chunksize 500`` doubles the number of tasks and the
per-chunk overheads (file open, histogram output of the chunk, Dask scheduling).

Single-threaded numerics everywhere (OMP_NUM_THREADS=1, ONNX Runtime intra-op threads 1) so
the worker count is the only parallelism.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/onnxruntime are imported

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from coffea import processor

warnings.filterwarnings("ignore", message="Missing cross-reference index")
warnings.filterwarnings("ignore", message=".*already exists")


class ReadOnly(processor.ProcessorABC):
    """Materializes ``branches`` through the same NanoEvents (virtual mode) the chain gets,
    and nothing else: the read cost of the chain, Runner and NanoEvents overheads included."""

    def __init__(self, branches: list[str]) -> None:
        self.branches = list(branches)

    def process(self, events: Any) -> dict[str, Any]:
        import awkward as ak

        for branch in self.branches:
            if branch in events.fields:  # genWeight
                ak.materialize(events[branch])
            elif branch.startswith("n") and branch[1:] in events.fields:  # counts: nFatJet
                ak.materialize(ak.num(events[branch[1:]]))
            else:  # FatJet_pt -> events.FatJet.pt
                collection, field = branch.split("_", 1)
                ak.materialize(events[collection][field])
        return {"entries": {events.metadata["dataset"]: len(events)}}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def branches_read(proc: processor.ProcessorABC, path: str) -> list[str]:
    """Branches a processor materializes on one file (NanoEvents access log)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    log: list[Any] = []
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="virtual", access_log=log,
                                         metadata={"dataset": "probe"}).events()
    proc.process(events)
    return sorted({entry.branch for entry in log})


def prepare(workdir: Path, events: int, seed: int) -> tuple[dict[str, Any], Path]:
    """Generated qcd + svj files and a dense AE trained on qcd (both cached in workdir)."""
    from coffea_ad.samples import generate_fileset

    fileset_json = workdir / "bench.json"
    if fileset_json.is_file() and json.loads(fileset_json.read_text()).get("bench_events") \
            == events:
        fileset = json.loads(fileset_json.read_text())["fileset"]
    else:
        per_file = max(events // 4, 100)
        t = time.perf_counter()
        fileset = generate_fileset(
            {"qcd": {"process": "qcd", "events": events, "events_per_file": per_file},
             "svj": {"process": "svj", "events": events // 2, "events_per_file": per_file,
                     "settings": {"mzprime": 3000.0, "rinv": 0.3}}},
            out=workdir / "samples", seed=seed, jobs=2)
        print(f"generated {events} qcd + {events // 2} svj events in "
              f"{time.perf_counter() - t:.0f} s")
        fileset_json.write_text(json.dumps({"bench_events": events, "fileset": fileset}))
    model = workdir / "models" / "dense_ae.onnx"
    if not model.is_file():
        from coffea_ad.training import dense_ae

        dense_ae.run({"epochs": 3, "train_datasets": ["qcd"], "seed": seed},
                     {"qcd": fileset["qcd"]}, workdir / "models" / "dense_ae")
    return fileset, model


def timed(fn: Any) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process, and the result of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="qcd events (svj: half)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunksize", type=int, default=100_000,
                        help="events per chunk (default: run_processor's and the CLI's default; "
                             "the generated files hold 1000 events, so one chunk per file)")
    parser.add_argument("--replicas", type=int, default=4,
                        help="process each generated dataset this many times per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coffea_ad_bench"))
    args = parser.parse_args()

    from coffea_ad.execution import dask_client, run_processor
    from coffea_ad.processors.svj import SVJProcessor

    args.workdir.mkdir(parents=True, exist_ok=True)
    generated, model = prepare(args.workdir, args.events, args.seed)
    # each dataset listed --replicas times: longer runs on the same files, so the fixed cost
    # of a run (planning, shipping the processor, merging) does not dominate the rates
    fileset = {f"{name}_{k}": entry for k in range(args.replicas)
               for name, entry in generated.items()}
    n_events = sum(d["metadata"]["nevents"] for d in fileset.values())
    n_files = sum(len(d["files"]) for d in fileset.values())
    chain = SVJProcessor(model, tag_threshold=0.5,
                         scorer_options={"intra_op_threads": 1})
    first_file = next(iter(generated["qcd"]["files"]))
    branches = branches_read(chain, first_file)
    reader = ReadOnly(branches)
    assert branches_read(reader, first_file) == branches, "read-only pass reads other branches"
    print(f"{n_events} events per run ({args.replicas} passes over {n_files // args.replicas} "
          f"files), chunksize {args.chunksize}; the chain reads "
          f"{len(branches)} branches: {', '.join(branches)}")

    cpu_rates: dict[str, list[float]] = {"read-only": [], "full chain": []}

    def run(proc: processor.ProcessorABC, cpu_key: str | None = None, **kw: Any) -> float:
        wall, cpu, out = timed(lambda: run_processor(fileset, proc, chunksize=args.chunksize,
                                                     **kw))
        assert out["run_info"]["entries_processed"] == n_events, out["run_info"]
        if cpu_key:  # in-process runs: CPU time is what other users of the machine can't steal
            cpu_rates[cpu_key].append(n_events / cpu)
        return n_events / wall

    # 1-2: one process, alternating
    run(reader, executor="iterative")
    run(chain, executor="iterative")  # warm-up: numba, ONNX session, page cache
    rates: dict[str, list[float]] = {"read-only": [], "full chain": []}
    for _ in range(args.repeats):
        rates["read-only"].append(run(reader, "read-only", executor="iterative"))
        rates["full chain"].append(run(chain, "full chain", executor="iterative"))

    # 3: Dask, 1 worker vs 2 workers (cluster start not timed; a warm-up run on each)
    for workers in (1, 2):
        key = f"dask x{workers}"
        rates[key] = []
        with dask_client(workers=workers, threads=1) as client:
            run(chain, client=client)
            for _ in range(args.repeats):
                rates[key].append(run(chain, client=client))

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nevents/s (median of {args.repeats}; all runs: min..max)")
    for k, v in rates.items():
        print(f"  {k:<11} {med[k]:9.0f}   ({min(v):.0f}..{max(v):.0f})")
    ratio = med["full chain"] / med["read-only"]
    eff = med["dask x2"] / (2 * med["dask x1"])
    cpu_ratio = (statistics.median(cpu_rates["full chain"])
                 / statistics.median(cpu_rates["read-only"]))
    print(f"\nfull chain / read-only      = {ratio:.2f}   (target >= 0.5)")
    print(f"  same, per CPU second       = {cpu_ratio:.2f}   (insensitive to other load)")
    print(f"parallel efficiency 2 vs 1  = {eff:.0%}   (target >= 85%)")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
