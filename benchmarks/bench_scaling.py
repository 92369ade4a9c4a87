"""How the cost of an SVJ run grows with events, datasets and systematics.

Wall time, peak memory of the client and of the Dask workers, and the size of the output
histograms, for the dense-AE SVJ chain on a Dask LocalCluster (2 workers x 1 thread), when

- the events grow 1x, 4x, 16x (one dataset of 1, 4, 16 copies of one generated file);
- the datasets grow 1 -> 10 -> 100 (the same file under that many dataset names: a signal
  grid of 100 mass points costs what 100 datasets cost);
- the systematics grow 1 -> 5 (the real CMS ``pfnano.root``, which has generator AK8 jets,
  copied to 10 files; nominal alone vs nominal + JES and JER up/down from the CMS JERC
  correctionlib file).

Each configuration runs in a fresh process with a fresh cluster (cluster start not timed),
so the peak RSS (``ru_maxrss``) of the client and of each worker is that configuration's; a
warm-up run on one file per worker (imports, numba cache, ONNX sessions: the "cold" column)
comes before the timed runs. Each configuration is timed ``--repeats`` times (default 3) on
its cluster and the median wall time is reported, with the spread (min..max), so one slow
run on a shared machine does not make a point of the scan.
Targets: time linear in events; output memory per dataset and systematic ≤ 1 MB for the
default histograms.

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --svj abcd_binning=fine     # the opt-in fine ABCD
    python benchmarks/bench_scaling.py --quick                     # smoke run

The generated file and the dense AE come from ``bench_chain.py``'s cache (made on first use).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Missing cross-reference index")
warnings.filterwarnings("ignore", message=".*already exists")

HERE = Path(__file__).resolve().parent
CMS = HERE.parent.parent / "shared" / "data" / "cms"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def output_bytes(output: dict[str, Any]) -> tuple[int, int, int]:
    """(bytes of the histogram storages incl. flow, datasets, systematics) of a run's output."""
    total, datasets, systematics = 0, 1, 1
    for h in output.get("hists", {}).values():
        total += h.view(flow=True).nbytes
        names = [ax.name for ax in h.axes]
        if "dataset" in names:
            datasets = max(datasets, len(h.axes["dataset"]))
        if "systematic" in names:
            systematics = max(systematics, len(h.axes["systematic"]))
    return total, datasets, systematics


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this (fresh) process: run, measure, return the figures."""
    from coffea_ad.execution import dask_client, run_processor
    from coffea_ad.processors.svj import SVJProcessor

    fileset = config["fileset"]
    proc = SVJProcessor(config["model"], tag_threshold=0.5,
                        scorer_options={"intra_op_threads": 1},
                        **config.get("svj", {}), **config.get("variations", {}))
    n_events = config["events"]
    rss_before = _maxrss_mb()
    with dask_client(workers=2, threads=1) as client:
        # warm-up on one file per worker (imports, numba cache load, ONNX sessions): the
        # timed run below is what each further run of a session costs
        first = next(iter(fileset.values()))
        warm = {f"warm{k}": {**first, "files": dict([next(iter(first["files"].items()))])}
                for k in range(2)}
        t = time.perf_counter()
        run_processor(warm, proc, client=client, chunksize=config["chunksize"])
        cold = time.perf_counter() - t
        walls = []
        for _ in range(max(1, int(config.get("repeats", 1)))):
            t = time.perf_counter()
            out = run_processor(fileset, proc, client=client, chunksize=config["chunksize"])
            walls.append(time.perf_counter() - t)
        workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert out["run_info"]["entries_processed"] == n_events, out["run_info"]
    hist_bytes, n_ds, n_sys = output_bytes(out)
    return {"wall_s": statistics.median(walls), "walls_s": walls, "cold_s": cold, "events": n_events, "client_peak_mb": _maxrss_mb(),
            "client_before_mb": rss_before, "worker_peak_mb": max(workers.values()),
            "hist_bytes": hist_bytes, "pickled_bytes": len(pickle.dumps(out["hists"])),
            "datasets": n_ds, "systematics": n_sys}


def copies(src: Path, folder: Path, n: int) -> list[str]:
    """``n`` copies of ``src`` in ``folder`` (distinct files, as a dataset of n files is)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        dst = folder / f"{src.stem}_{k:03d}.root"
        if not dst.is_file():
            shutil.copyfile(src, dst)
        out.append(str(dst))
    return out


def entry(files: list[str], metadata: dict[str, Any], per_file: int) -> dict[str, Any]:
    return {"files": {f: "Events" for f in files},
            "metadata": {**metadata, "nevents": per_file * len(files)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="1,4,16", help="event multiples (files of one "
                        "dataset)")
    parser.add_argument("--datasets", default="1,10,100")
    parser.add_argument("--sys-files", type=int, default=10,
                        help="copies of pfnano.root (10 events each) for the systematics")
    parser.add_argument("--svj", action="append", default=[], metavar="KEY=VALUE",
                        help="SVJProcessor option (JSON value or string), e.g. "
                             "abcd_binning=fine")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per configuration (median reported)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coffea_ad_bench"))
    parser.add_argument("--quick", action="store_true", help="1,4 events; 1,10 datasets")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a configuration (JSON), internal
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    if args.quick:
        args.events, args.datasets, args.sys_files, args.repeats = "1,4", "1,10", 5, 1

    sys.path.insert(0, str(HERE))
    from bench_chain import prepare

    svj_opts: dict[str, Any] = {}
    for item in args.svj:
        key, _, value = item.partition("=")
        try:
            svj_opts[key] = json.loads(value)
        except json.JSONDecodeError:
            svj_opts[key] = value
    generated, model = prepare(args.workdir, 2000, 1000, 7)
    base = Path(next(iter(generated["qcd"]["files"])))
    meta = {k: v for k, v in generated["qcd"]["metadata"].items() if k != "nevents"}
    per_file = generated["qcd"]["metadata"]["nevents"] // len(generated["qcd"]["files"])
    folder = args.workdir / "scaling"

    configs: list[tuple[str, dict[str, Any]]] = []
    for k in [int(x) for x in args.events.split(",")]:
        files = copies(base, folder / "qcd", k)
        configs.append((f"events x{k}", {"fileset": {"qcd": entry(files, meta, per_file)},
                                          "events": k * per_file}))
    for n in [int(x) for x in args.datasets.split(",")]:
        fs = {f"sig_{i:03d}": entry([str(base)], meta, per_file) for i in range(n)}
        configs.append((f"datasets {n}", {"fileset": fs, "events": n * per_file}))
    pfnano = CMS / "pfnano.root"
    sys_files = copies(pfnano, folder / "pfnano", args.sys_files)
    jerc = CMS / "jet_jerc_Summer22_V3.json.gz"
    for label, variations in (("systematics 1", {}),
                              ("systematics 5", {"variations": str(jerc)})):
        fs = {"pfnano": entry(sys_files, {"process": "cms"}, 10)}
        configs.append((label, {"fileset": fs, "events": 10 * len(sys_files),
                                "variations": variations}))

    print(f"dense-AE SVJ chain, Dask LocalCluster 2 workers x 1 thread, default chunk size; "
          f"files of {per_file} events (generated qcd) and 10 events (pfnano.root); "
          f"SVJProcessor options {svj_opts or 'default'}; wall: median of {args.repeats} "
          f"runs (min..max)")
    print(f"{'configuration':<16} {'events':>7} {'wall s':>7} {'min..max':>13} {'ms/kev':>7} "
          f"{'cold s':>7} "
          f"{'client MB':>10} "
          f"{'worker MB':>10} {'hists MB':>9} {'MB per ds x sys':>16}")
    results = {}
    for label, cfg in configs:
        cfg = {**cfg, "model": str(model), "chunksize": 100_000, "svj": svj_opts,
               "repeats": args.repeats}
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{label}: failed\n{proc.stderr[-3000:]}")
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[label] = r
        per = r["hist_bytes"] / (r["datasets"] * r["systematics"]) / 1e6
        spread = f"{min(r['walls_s']):.2f}..{max(r['walls_s']):.2f}"
        print(f"{label:<16} {r['events']:>7} {r['wall_s']:>7.2f} {spread:>13} "
              f"{r['wall_s'] / r['events'] * 1e6:>7.1f} {r['cold_s']:>7.2f} "
              f"{r['client_peak_mb']:>10.0f} "
              f"{r['worker_peak_mb']:>10.0f} {r['hist_bytes'] / 1e6:>9.2f} {per:>16.3f}")

    ev = [(r["events"], r["wall_s"]) for k, r in results.items() if k.startswith("events")]
    if len(ev) >= 2:
        (n0, t0), (n1, t1) = ev[0], ev[-1]
        slope = (t1 - t0) / (n1 - n0)
        print(f"\ntime vs events (medians): {slope * 1e6:.1f} ms per 1000 events beyond the first "
              f"{n0}, fixed cost {t0 - slope * n0:.2f} s; t({n1})/t({n0}) = {t1 / t0:.2f} for "
              f"{n1 / n0:.0f}x the events")
    worst = max(r["hist_bytes"] / (r["datasets"] * r["systematics"]) for r in results.values())
    print(f"output memory per dataset and systematic: at most {worst / 1e6:.3f} MB "
          f"(target <= 1 MB: {'met' if worst <= 1e6 else 'NOT met'})")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
