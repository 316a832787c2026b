"""Time and peak memory of one cycle's scoring for pools of 10^4 to 10^6 candidates, C = 10 and 8,142.

Each cell scores a synthetic pool with :func:`tidal.gather.select` (the loop's one selection
call: eval batch 1024, top k = 100) in a fresh process on one torch thread. The pool's
features are made on the fly from the sample ids (``x_i = sin(i * w + b)``, ``w, b`` fixed by
the seed), so the pool itself takes no memory and the model forward is a tiny MLP
(``DIM`` inputs, one hidden layer of ``DIM``, ``C`` outputs, untrained; dropout 0.5 for BALD):
what is measured is the scoring path. Methods: ``entropy``, ``tidal-entropy`` (with its TD
module's prediction), ``bald`` (T = 10 MC-dropout passes) streamed through a running top-k,
and ``coreset`` (k-center greedy from ``LABELED`` labeled centers) over the embedding store in
memory (float32, the default) and on disk (float16 memory-mapped file).

Peak = the process's ``ru_maxrss`` after scoring minus just before it (torch and the model
loaded; a warm-up scoring of 2,048 candidates runs in between and counts, so one-time buffers
are included), with glibc's mmap threshold at 1 MiB so that freed arrays leave the process at
once. A cell whose time, extrapolated linearly from the previous size, would
exceed ``--max-cell-seconds`` is skipped and marked with that estimate.

    nice -n 10 python benchmarks/scoring_scale.py [--sizes 10000 100000 1000000] [--classes 10 8142]

Prints a markdown table and saves it to benchmarks/results/scoring_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CELLS = (("entropy", "-"), ("tidal-entropy", "-"), ("bald", "-"), ("coreset", "memory f32"), ("coreset", "disk f16"))
DIM, K, LABELED, T, BATCH = 32, 100, 100, 10, 1024


def synthetic_pool(n: int, classes: int, seed: int = 0):
    """A :class:`~tidal.data.dataset.Split` of ``n`` feature vectors ``[DIM]`` computed from the ids when asked."""
    import torch

    from tidal.data.dataset import FeatureDataset

    g = torch.Generator().manual_seed(seed)
    w, b = torch.rand(DIM, generator=g) * 0.1, torch.rand(DIM, generator=g) * 6.3

    class OnTheFly(FeatureDataset):
        """Features ``sin(i * w + b)`` of sample ``i``; only the labels ``[n]`` are stored."""

        def __post_init__(self) -> None:
            pass

        def __len__(self) -> int:
            return len(self.labels)

        @property
        def input_shape(self) -> tuple[int, ...]:
            return (DIM,)

        @property
        def device(self):
            return torch.device("cpu")

        def inputs(self, ids):
            return torch.sin(ids.double()[:, None] * w.double() + b.double()).float()

        def batches(self, batch_ids, augment=None, generator=None):
            for ids in batch_ids:
                yield ids, self.inputs(ids)

    return OnTheFly(torch.zeros(0), torch.zeros(n, dtype=torch.int64), classes)


def run_cell(method: str, store: str, n: int, classes: int) -> dict:
    """One cell, in this process: ``{"seconds", "peak_mib", "store_mib"}``."""
    import torch

    from common import scoring_setup
    from tidal.embedstore import EmbeddingStore, StoreSpec
    from tidal.gather import ScoringPass, select

    torch.set_num_threads(1)
    pool = synthetic_pool(n + LABELED, classes)
    candidates, labeled = torch.arange(n), torch.arange(n, n + LABELED)
    strategy, model, objective = scoring_setup(pool, method, classes, DIM, DIM, T, candidates, labeled, BATCH)
    spec = None
    tmp = None
    if store == "disk f16":
        tmp = tempfile.mkdtemp(prefix="scoring-scale-")
        spec = StoreSpec("disk", "float16", tmp)
    sizes = []
    real_close = EmbeddingStore.close

    def close(self):  # record the store's size before it is removed
        sizes.append(self.nbytes)
        real_close(self)

    EmbeddingStore.close = close
    g = torch.Generator().manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    warm = torch.arange(2 * BATCH + LABELED, 2 * BATCH + 2 * LABELED)
    select(strategy, ScoringPass(model, objective, pool, torch.arange(2 * BATCH), warm, K, g, BATCH), store=spec)  # warm-up
    t0 = time.perf_counter()
    ids, _ = select(strategy, ScoringPass(model, objective, pool, candidates, labeled, K, g, BATCH), store=spec)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(ids) == K
    if tmp is not None:
        assert not os.listdir(tmp), "the disk store left files behind"
        os.rmdir(tmp)
    return {"seconds": seconds, "peak_mib": (after - base) / 1024, "store_mib": (sizes[-1] if sizes else 0) / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 8142])
    p.add_argument("--max-cell-seconds", type=float, default=120.0,
                   help="skip a cell whose time extrapolated from the previous size exceeds this")
    p.add_argument("--cell", nargs=4, metavar=("METHOD", "STORE", "N", "C"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_scale.md"))
    args = p.parse_args()
    if args.cell:
        method, store, n, c = args.cell
        print(json.dumps(run_cell(method, store, int(n), int(c))))
        return
    from common import write_table

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    rows, measured = [], {}
    start = time.perf_counter()
    for classes in args.classes:
        for method, store in CELLS:
            last: tuple[int, float] | None = None
            for n in sorted(args.sizes):
                cells = [method, store, f"{classes:,}", f"{n:,}"]
                est = None if last is None else last[1] * n / last[0]
                if est is not None and est > args.max_cell_seconds:
                    cells += [f"skipped (est. {est / 60:.0f} min)", "-", "-"]
                    last = (n, est)
                else:
                    proc = subprocess.run([sys.executable, __file__, "--cell", method, store, str(n), str(classes)],
                                          capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        cells += [f"failed ({proc.returncode})", "-", "-"]
                    else:
                        r = json.loads(proc.stdout.strip().splitlines()[-1])
                        last = (n, r["seconds"])
                        measured.setdefault((method, store, classes), []).append((n, r["peak_mib"]))
                        cells += [f"{r['seconds']:.2f}", f"{r['peak_mib']:,.0f}",
                                  f"{r['store_mib']:,.0f}" if store != "-" else "-"]
                print(" | ".join(cells), f"(elapsed {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
                rows.append(cells)
    # Memory per 10^5 candidates: the slope of the peak between the smallest and the largest size run.
    slopes = []
    for (method, store, classes), points in measured.items():
        if len(points) > 1:
            (n0, m0), (n1, m1) = points[0], points[-1]
            slopes.append(f"{method} ({store}, C = {classes:,}): {(m1 - m0) / ((n1 - n0) / 1e5):.1f} MiB per 10^5 "
                          f"(from {n0:,} to {n1:,})")
    header = ["method", "embedding store", "C", "n", "seconds", "peak MiB", "store MiB"]
    caption = (f"One cycle's scoring (tidal.gather.select: top {K}, eval batch {BATCH}, BALD T = {T}, Core-Set from "
               f"{LABELED} labeled centers) of synthetic pools: an untrained MLP ({DIM} -> {DIM} -> C) over features "
               "made on the fly, one torch thread per process on "
               f"{platform.processor() or platform.machine()} (a shared 2-core machine). Peak = ru_maxrss increase "
               "during scoring, a warm-up of 2,048 candidates included (MALLOC_MMAP_THRESHOLD_=1 MiB); store MiB = the embedding store's size (disk: the file, "
               "removed after scoring). Total run "
               f"{(time.perf_counter() - start) / 60:.1f} min.")
    write_table(caption, header, rows, args.out, left=2)
    text = "\nPeak memory added per 10^5 candidates (slope):\n\n" + "".join(f"- {line}\n" for line in slopes)
    print(text)
    with open(args.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
