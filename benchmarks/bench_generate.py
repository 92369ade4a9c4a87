"""Events/s of bare Pythia vs the full generator (detector + FastJet + writing), and --jobs scaling.

Bare Pythia and the full generator run the same Pythia commands (same process, settings and
seed) side by side in one process, interleaved over ``--repeats`` rounds; medians are printed
with their ratio (target: full >= 0.75x bare). Then :func:`coffea_ad.samples.generate` is timed
end to end (spawned workers, Pythia init, files, fileset) with ``--jobs 1`` and ``--jobs 2``.

    python benchmarks/bench_generate.py --process qcd --events 1000 --repeats 3

Run on a quiet machine; one thread per process (OMP_NUM_THREADS=1 is set here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def bare_rate(process: str, settings: dict, events: int, seed: int) -> float:
    import pythia8mc

    from coffea_ad.samples.processes import pythia_commands

    pythia = pythia8mc.Pythia("", False)
    for cmd in pythia_commands(process, settings, seed=seed):
        pythia.readString(cmd)
    pythia.init()
    start = time.perf_counter()
    done = 0
    while done < events:
        done += bool(pythia.next())
    return events / (time.perf_counter() - start)


def full_rate(process: str, settings: dict, events: int, seed: int, folder: Path) -> float:
    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.generate import _CHUNK
    from coffea_ad.samples.writer import EventsWriter

    maker = EventMaker(process, settings, seed=seed)
    start = time.perf_counter()
    with EventsWriter(folder / "bench.root") as writer:
        done = 0
        while done < events:
            n = min(_CHUNK, events - done)
            writer.write(maker.make(n, first_event=done + 1))
            done += n
    return events / (time.perf_counter() - start)


def driver_rate(process: str, settings: dict, events: int, seed: int, jobs: int, folder: Path) -> float:
    from coffea_ad.samples import generate

    start = time.perf_counter()
    generate(process, events=events, seed=seed, out=folder, settings=settings, jobs=jobs,
             events_per_file=max(1, events // 4))
    return events / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--process", default="qcd")
    parser.add_argument("--events", type=int, default=1000, help="events per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-jobs", action="store_true", help="skip the --jobs scaling part")
    args = parser.parse_args()

    from coffea_ad.samples.processes import resolve_settings

    settings = resolve_settings(args.process)
    bare, full = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # once per process: imports, numba kernels loaded from their cache, FastJet banner
        full_rate(args.process, settings, 20, args.seed, Path(tmp))
        for r in range(args.repeats):
            seed = args.seed + r
            bare.append(bare_rate(args.process, settings, args.events, seed))
            full.append(full_rate(args.process, settings, args.events, seed, Path(tmp)))
            print(f"round {r}: bare Pythia {bare[-1]:7.1f} ev/s   full generator {full[-1]:7.1f} ev/s")
    b, f = statistics.median(bare), statistics.median(full)
    print(f"\n{args.process}, {args.events} events x {args.repeats} rounds (medians, one core)")
    print(f"  bare Pythia      : {b:8.1f} events/s")
    print(f"  full generator   : {f:8.1f} events/s  (detector + FastJet + substructure + ROOT)")
    print(f"  ratio full/bare  : {f / b:8.2f}   (target >= 0.75)")

    if args.skip_jobs:
        return
    rates = {}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            rates[jobs] = driver_rate(args.process, settings, 2 * args.events, args.seed, jobs, Path(tmp))
    print(f"\ngenerate(): {2 * args.events} events in 4 files, end to end incl. Pythia init and worker start")
    print(f"  --jobs 1 : {rates[1]:8.1f} events/s")
    print(f"  --jobs 2 : {rates[2]:8.1f} events/s   speed-up {rates[2] / rates[1]:.2f}x on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
