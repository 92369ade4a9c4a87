"""Time ONNX files of the graph AE side by side: ONNX Runtime on one thread, ms per 1000 jets.

The files run in turn at each batch size, ``--rounds`` times; printed are the medians and the
median of the per-round ratios to the first file. Inputs: an ``.npz`` with ``x``
``[jets, n, F]`` float32 and ``m`` ``[jets, n]`` float32 (padded jets, as the scorer feeds
them); only the ``loss`` output is fetched, as the scorer does. ``--scorer`` times
``OnnxScorer`` instead of bare sessions (what a processor pays, derived inputs such as a
graph's adjacency included, computed per batch), and checks that every file gives the
first file's scores bit for bit.

    OMP_NUM_THREADS=1 python studies/bench_gae_files.py --inputs jets.npz OLD.onnx NEW.onnx
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--inputs", type=Path, required=True, help=".npz with x and m")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--scorer", action="store_true",
                        help="time OnnxScorer (derived inputs included), check equal scores")
    args = parser.parse_args()

    import onnxruntime as ort

    data = np.load(args.inputs)
    x, m = data["x"], data["m"]

    def session(path: Path) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def runner(path: Path, batch: int):
        if args.scorer:
            from coffea_ad.inference import OnnxScorer

            scorer = OnnxScorer(path, intra_op_threads=1, batch_size=batch)
            return lambda: scorer({"particles": x, "mask": m})
        sess = session(path)

        def run() -> np.ndarray:
            return np.concatenate([sess.run(["loss"], {"particles": x[a:a + batch],
                                                       "mask": m[a:a + batch]})[0]
                                   for a in range(0, len(x), batch)])
        return run

    runs = {(k, batch): runner(p, batch) for k, p in enumerate(args.files)
            for batch in args.batches}
    if args.scorer:
        for (k, batch), run in runs.items():
            if not np.array_equal(run(), runs[(0, batch)]()):
                raise SystemExit(f"{args.files[k]} scores differ from {args.files[0]}")
        print(f"scores equal bit for bit on {len(x)} jets")
    times: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in args.batches:
            for k in range(len(args.files)):
                t = time.perf_counter()
                runs[(k, batch)]()
                times.setdefault((k, batch), []).append((time.perf_counter() - t) / len(x) * 1e6)
    for batch in args.batches:
        first = times[(0, batch)]
        for k, path in enumerate(args.files):
            ratio = statistics.median(v / f for v, f in zip(times[(k, batch)], first,
                                                            strict=True))
            print(f"batch {batch:4d} {path}: {statistics.median(times[(k, batch)]):6.2f} ms "
                  f"per 1000 jets, {ratio:.3f}x the first")


if __name__ == "__main__":
    main()
