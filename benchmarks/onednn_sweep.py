"""Where does this torch build's oneDNN corrupt memory? A sweep of convolution shapes, each in a child.

    python benchmarks/onednn_sweep.py [--isa native AVX2] [--threads 1 2] [--reps 20] [--quick]

For every case — convolution kind (1x1 / 3x3, stride 1 / 2), channels in -> out (the built-in
ResNets' widths 2-64 and a user CNN's typical 1-128), spatial size, batch size (odd and even),
memory format (channels-last / NCHW), torch threads (1, 2) and oneDNN's instruction set (this
CPU's own, and AVX2 forced with ``ONEDNN_MAX_CPU_ISA``, as on a CPU without AVX-512) — a child
process trains the convolution ``--reps`` times (forward, then backward) with oneDNN's verbose log
on, and compares every output and gradient with a float64 reference computed by torch's native
kernels (wrong: off by more than 1e-4 of the tensor's norm; float32 rounding is ~1e-6). A crash
(the child dies on a signal), a hang (no answer within ``--timeout`` s) or a
wrong number is a data point, not the end of the sweep: one child runs the cases in turn and a
new one takes over after a crash or a hang. Cases over ``MAX_MACS`` multiply-adds are left out
(the float64 reference would take minutes).

Each case records which oneDNN implementation ran the backward-weights pass (from the verbose
log), so the table shows the boundary in oneDNN's terms. The raw rows go to
``benchmarks/results/onednn_sweep.csv``; the summary table (failures by implementation, and by
memory format x kind x ISA) to ``benchmarks/results/onednn_sweep.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from common import write_table

KINDS = [(1, 1), (1, 2), (3, 1), (3, 2)]  # (kernel, stride)
# (in, out): the built-in ResNets' transitions at widths 2..64, equal widths, and a user CNN's stems
CHANNELS = [(2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128), (4, 4), (8, 8), (16, 16), (64, 64),
            (1, 8), (3, 16), (3, 32), (3, 64), (128, 128)]
SIZES = [7, 16, 28, 32]
BATCHES = [1, 7, 16, 17, 128]
MAX_MACS = 3e8  # multiply-adds of one forward pass; larger cases are left out
QUICK = dict(channels=[(2, 4), (4, 8), (8, 16), (16, 32), (3, 16), (64, 64)], sizes=[7, 16, 28], batches=[7, 16, 17, 128])

CHILD = r"""
import contextlib, os, sys, json
import torch, torch.nn.functional as F
reps = int(sys.argv[1])
torch.set_num_threads(int(sys.argv[2]))
out = os.fdopen(int(sys.argv[3]), "w", buffering=1)
guarded = sys.argv[4] == "1"
if guarded:  # the convolution goes through tidal's fix, as a training step does
    from tidal.kernels import ConvGuard
for line in sys.stdin:
    k, s, cin, cout, hw, b, cl = json.loads(line)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, cin, hw, hw, generator=g)
    w = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
    gy = None
    # the float64 reference through torch's native kernels (oneDNN does not run float64)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    y64 = F.conv2d(x64, w64, stride=s, padding=k // 2)
    gy = torch.randn(y64.shape, generator=g)
    y64.backward(gy.double())
    fmt = torch.channels_last if cl else torch.contiguous_format
    xs = x.contiguous(memory_format=fmt).requires_grad_()
    ws = w.contiguous(memory_format=fmt).requires_grad_()
    gys = gy.contiguous(memory_format=fmt)
    bad = 0
    out.write("start\n")
    for _ in range(reps):
        xs.grad = ws.grad = None
        guard = ConvGuard(torch.device("cpu")).step() if guarded else contextlib.nullcontext()
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON_CREATION), guard:
            y = F.conv2d(xs, ws, stride=s, padding=k // 2)
            out.write("fwd\n")
            y.backward(gys)
        for got, ref in ((y, y64), (xs.grad, x64.grad), (ws.grad, w64.grad)):
            # float32 sums of up to 10^5 terms are off by ~1e-6 of the tensor's norm; corruption by far more
            if not bool(((got.double() - ref).norm() <= 1e-4 * ref.norm() + 1e-6).item()):
                bad += 1
    out.write(f"done {bad}\n")
"""


def run_group(isa: str, threads: int, cases: list[tuple], reps: int, timeout: float, guarded: bool = False) -> list[dict]:
    """Run ``cases`` in a child process, one after another; when it dies or hangs, the case it was
    on is recorded and a new child takes the rest. One row per case."""
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # as tidal runs: spinning threads would crawl on a loaded machine
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    rows, todo = [], list(cases)
    while todo:
        r, w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(reps), str(threads), str(w), str(int(guarded))], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=(w,), text=True, start_new_session=True)
        os.close(w)
        pending = b""  # the status pipe's bytes not yet split into lines
        # oneDNN's verbose log arrives on the child's stdout; read what is there, never block on it
        log_fd = proc.stdout.fileno()
        os.set_blocking(log_fd, False)
        while todo:
            case = todo[0]
            proc.stdin.write(json.dumps(case) + "\n")
            proc.stdin.flush()
            phase, result, deadline, log = "start", None, time.monotonic() + timeout, []
            while result is None:
                ready, _, _ = select.select([r, log_fd], [], [], max(0.0, deadline - time.monotonic()))
                if log_fd in ready:
                    try:
                        log.append(os.read(log_fd, 1 << 16).decode(errors="replace"))
                    except BlockingIOError:
                        pass
                if r in ready:
                    data = os.read(r, 4096)
                    if not data:  # the child died
                        proc.wait()
                        result = f"crash (signal {-proc.returncode})" if proc.returncode < 0 else f"exit {proc.returncode}"
                    pending += data
                    while b"\n" in pending and result is None:
                        line, pending = pending.split(b"\n", 1)
                        if line.startswith(b"done"):
                            bad = int(line.split()[1])
                            result = "ok" if bad == 0 else f"wrong ({bad} of {3 * reps})"
                        else:
                            phase = line.decode()
                if result is None and time.monotonic() > deadline:
                    result = "hang"
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            text = "".join(log)
            # creation lines come before the primitive runs, so a crash still names its implementation
            impl = re.findall(r"convolution,([^,]+),backward_weights", text)
            k, s, cin, cout, hw, b, cl = case
            rows.append(dict(isa=isa, threads=threads, kernel=k, stride=s, cin=cin, cout=cout, size=hw, batch=b,
                             format="channels-last" if cl else "NCHW", bwd_weights_impl=impl[0] if impl else "",
                             phase=phase if result != "ok" else "", result=result))
            todo.pop(0)
            if result.startswith(("crash", "hang", "exit")):
                break
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:  # a dead child's stdin: nothing to flush
                pass
        os.close(r)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isa", nargs="+", default=["native", "AVX2"], help="oneDNN instruction sets: native = this CPU's own")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--reps", type=int, default=10, help="forward+backward passes per case")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    p.add_argument("--quick", action="store_true", help="a smaller grid of channels, sizes and batches")
    p.add_argument("--kinds", nargs="+", default=["1x1s1", "1x1s2", "3x3s1", "3x3s2"], help="convolution kinds")
    p.add_argument("--guarded", action="store_true",
                   help="run every convolution through tidal.kernels.ConvGuard, as tidal's training step does")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "onednn_sweep"))
    args = p.parse_args()
    import torch

    grid = QUICK if args.quick else dict(channels=CHANNELS, sizes=SIZES, batches=BATCHES)
    cases = [(k, s, cin, cout, hw, b, cl) for (k, s), (cin, cout), hw, b, cl in itertools.product(
        [kind for kind in KINDS if f"{kind[0]}x{kind[0]}s{kind[1]}" in args.kinds], grid["channels"], grid["sizes"],
        grid["batches"], (1, 0))
        if b * cout * cin * k * k * (hw // s) ** 2 <= MAX_MACS]
    rows, t0 = [], time.time()
    for isa, threads in itertools.product(args.isa, args.threads):
        got = run_group(isa, threads, cases, args.reps, args.timeout, args.guarded)
        # a crash or a wrong number can be the late effect of an earlier case's corruption in the
        # same child: run each failing case again alone in a fresh child
        for row in got:
            if row["result"] != "ok":
                case = (row["kernel"], row["stride"], row["cin"], row["cout"], row["size"], row["batch"],
                        int(row["format"] == "channels-last"))
                row["alone"] = run_group(isa, threads, [case], args.reps, args.timeout, args.guarded)[0]["result"]
            else:
                row["alone"] = ""
        rows += got
        bad = sum(r["result"] != "ok" for r in got)
        print(f"isa={isa} threads={threads}: {len(got)} cases, {bad} failed ({time.time() - t0:.0f} s)", flush=True)
        summarize(rows, args, time.time() - t0)  # after every group: a stopped sweep keeps what it measured


def summarize(rows: list[dict], args: argparse.Namespace, seconds: float) -> None:
    """Write the raw rows (CSV) and the summary tables (markdown) of the cases measured so far."""
    import torch

    with open(args.out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    by_impl: dict[tuple, Counter] = defaultdict(Counter)
    for r in rows:
        c = by_impl[(r["isa"], r["bwd_weights_impl"] or "(none: native kernels)")]
        c[r["result"].split(" ")[0]] += 1
        c["confirmed"] += r["result"] != "ok" and r["alone"] != "ok"
    table = [(isa, impl, c["ok"] + c["crash"] + c["hang"] + c["wrong"] + c["exit"], c["ok"], c["crash"], c["hang"],
              c["wrong"], c["exit"], c["confirmed"]) for (isa, impl), c in sorted(by_impl.items())]
    by_shape: dict[tuple, Counter] = defaultdict(Counter)
    for r in rows:
        by_shape[(r["isa"], r["format"], f"{r['kernel']}x{r['kernel']} s{r['stride']}")][r["result"] != "ok"] += 1
    shape_rows = [(isa, fmt, kind, c[False] + c[True], c[True]) for (isa, fmt, kind), c in sorted(by_shape.items())]
    failing = sorted({(r["isa"], r["format"], r["kernel"], r["stride"], r["cin"], r["cout"], r["bwd_weights_impl"])
                      for r in rows if r["result"] != "ok" and r["alone"] != "ok"})
    caption = (f"oneDNN sweep{' through tidal.kernels.ConvGuard' if args.guarded else ''}: torch {torch.__version__} on {platform.machine()} "
               f"({torch.backends.cpu.get_cpu_capability()}), {len(rows)} cases, {args.reps} fwd+bwd passes each, "
               f"threads {args.threads}, `python benchmarks/onednn_sweep.py {' '.join(sys.argv[1:])}` "
               f"({seconds:.0f} s). Failures by the implementation oneDNN chose for the weights' gradient:")
    write_table(caption, ["ISA", "backward-weights implementation", "cases", "ok", "crash", "hang", "wrong", "exit",
                            "failed again alone"],
                table, args.out + ".md", left=2)
    text = Path(args.out + ".md").read_text()
    text += "\nFailures by memory format and kind:\n\n| ISA | format | kind | cases | failed |\n|---|---|---|---:|---:|\n"
    text += "".join(f"| {a} | {b} | {c} | {d} | {e} |\n" for a, b, c, d, e in shape_rows)
    text += ("\nFailing (ISA, format, kernel, stride, in, out, backward-weights implementation) combinations, "
             "where the case failed again when run alone in a fresh child:\n\n")
    text += "".join(f"- {f}\n" for f in failing) or "- none\n"
    Path(args.out + ".md").write_text(text)
    print(text[text.index("\nFailures by memory format"):], flush=True)


if __name__ == "__main__":
    main()
