"""Copy finished runs from one run directory into another of the same experiment.

    python benchmarks/copy_runs.py SRC DST --methods M [M ...] [--imbalances X ...] [--seeds N ...]

A run's numbers depend only on the experiment's identity (``ExperimentConfig.identity()``:
training, AL protocol, strategy options) and its (dataset, imbalance, method, seed), which is
what lets ``tidal run`` resume. So a run finished in SRC is the run DST would compute, and
copying it saves its training. Refused unless both directories hold the same identity; only
complete runs (every cycle) are copied, each cycle with its stored timings; runs DST already
holds are left alone. Issue 20 uses it to bring the tuning runs at the chosen β
(``benchmarks/td_variants_tuning.sh``) into the grid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tidal.results import DB_NAME, ResultStore


def copy_runs(src: Path, dst: Path, methods: list[str], imbalances: list[float] | None = None,
              seeds: list[int] | None = None) -> list[tuple]:
    """Copy the complete runs of ``methods`` (and the given imbalances/seeds) from ``src`` to ``dst``;
    returns the run keys copied. Raises ``SystemExit`` with the reason when the experiments differ."""
    with ResultStore(src / DB_NAME, readonly=True) as a, ResultStore(dst / DB_NAME) as b:
        ca, cb = a.config(), b.config()
        if ca is None or cb is None:
            raise SystemExit(f"{src if ca is None else dst} holds no experiment")
        if ca.identity() != cb.identity():
            raise SystemExit(f"{src} and {dst} hold different experiments; nothing copied")
        have = b.cycle_counts()
        copied = []
        for key, n in sorted(a.cycle_counts().items()):
            if (key.method not in methods or n != ca.al.cycles or key in have
                    or (imbalances and key.imbalance not in imbalances) or (seeds and key.seed not in seeds)):
                continue
            for rec in a.records(dataset=key.dataset, imbalance=key.imbalance, method=key.method, seed=key.seed):
                b.add_cycle(rec, [])
            copied.append(tuple(key))
        return copied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--imbalances", nargs="+", type=float)
    ap.add_argument("--seeds", nargs="+", type=int)
    args = ap.parse_args(argv)
    for key in copy_runs(args.src, args.dst, args.methods, args.imbalances, args.seeds):
        print("copied", *key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
