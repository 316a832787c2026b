"""Time the README's "Label your own data" walk, command by command, on a folder of real images.

    python benchmarks/labelling_walk.py [--pool 600] [--k 30] [--rounds 3] [--work DIR]

Writes a folder of FashionMNIST PNGs (three classes, flat, no labels) and a holdout folder
sorted by class, then runs the walk of README.md ("Label your own data") with the `tidal` command line:
init, then per round query and label (the person's answers are filled in from FashionMNIST's
own labels by this script: the time a person spends looking is not measured), then status
and report. Prints the seconds of each command and their total, and saves the table to
benchmarks/results/labelling_walk.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_table

from tidal.data import load_dataset

CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker"}  # FashionMNIST label -> class folder name


def make_folders(work: Path, pool: int, holdout: int) -> dict[str, str]:
    """The demo pool and holdout (README.md ("Label your own data"), step 0); returns {pool path: class}."""
    from PIL import Image

    data = load_dataset("fashion-mnist")
    truth = {}
    for split, folder, n, by_class in ((data.train, "my-images", pool, False), (data.test, "my-holdout", holdout,
                                                                                 True)):
        count = 0
        for i, label in enumerate(split.labels.tolist()):
            if label in CLASSES and count < n:
                rel = (f"{CLASSES[label]}/" if by_class else "") + f"photo {i:05d}.png"
                (work / folder / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(split.images[i, 0].numpy()).save(work / folder / rel)
                if not by_class:
                    truth[rel] = CLASSES[label]
                count += 1
    return truth


def fill(to_label: Path, out: Path, truth: dict[str, str]) -> None:
    """The person's part: to_label.csv with its label column filled in."""
    with open(to_label, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "label": truth[r["path"]]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=600, help="pool images")
    p.add_argument("--holdout", type=int, default=150, help="holdout images")
    p.add_argument("--k", type=int, default=30, help="labels asked per round")
    p.add_argument("--rounds", type=int, default=3, help="query rounds")
    p.add_argument("--work", help="folder to work in (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tidal-walk-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    def step(what: str, *cmd: str) -> str:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tidal", *cmd], cwd=work, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"`tidal {' '.join(cmd)}` failed: {proc.stderr}")
        rows.append([what, "`tidal " + " ".join(cmd) + "`", f"{seconds:.1f}"])
        return proc.stdout

    start = time.perf_counter()
    t0 = time.perf_counter()
    truth = make_folders(work, args.pool, args.holdout)
    rows.append(["0. demo folders", f"{args.pool} pool + {args.holdout} holdout PNGs", f"{time.perf_counter() - t0:.1f}"])
    step("1. init", "init", "shirts", "--data", "folder:my-images", "--classes", *CLASSES.values(), "--holdout",
         "my-holdout")
    last = ""
    for r in range(1, args.rounds + 1):
        last = step(f"2. query, round {r}", "query", "shirts", "-k", str(args.k), "--quiet")
        if r < args.rounds:
            fill(work / f"shirts/rounds/{r:03d}/to_label.csv", work / f"answers-{r}.csv", truth)
            step(f"3. label, round {r}", "label", "shirts", f"answers-{r}.csv")
    status = step("4. status", "status", "shirts")
    step("5. report", "report", "shirts")
    total = time.perf_counter() - start
    rows.append(["all (with the demo folders)", "", f"{total:.1f}"])
    print(status)
    print(last)
    write_table(f"The labelling walk of README.md (\"Label your own data\") on {args.pool} FashionMNIST PNGs, k = {args.k}, "
                f"{args.rounds} rounds, quick-preset training ({platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end); seconds per command. "
                "The answers are filled in by the script (a person's looking time is not measured).",
                ["step", "command", "seconds"], rows, Path(__file__).parent / "results" / "labelling_walk.md")


if __name__ == "__main__":
    main()
