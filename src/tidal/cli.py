"""Command-line front end: parses arguments, then makes one library call.

    tidal run --preset quick --methods tidal-entropy random --seeds 0 1 --out runs/demo
    tidal report runs/demo
    tidal analyze-scores --imbalance 10 --out runs/demo
    tidal methods;  tidal datasets;  tidal models
    tidal init PROJECT --data folder:PATH --classes cat dog;  tidal query PROJECT -k 100
    tidal label PROJECT answers.csv;  tidal status PROJECT;  tidal report PROJECT

The flags of `tidal run` that set the experiment are generated from the configuration
dataclasses (:mod:`tidal.flags`), so a field cannot exist without its flag. Only the standard
library, ``tidal.config`` and ``tidal.flags`` are imported before the arguments are parsed
(torch is imported when a command runs), so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tidal import __version__
from tidal.config import PRESETS, ExperimentConfig
from tidal.flags import ConfigFlag, config_flags, config_sections

__all__ = ["ConfigFlag", "build_parser", "config_flags", "config_from_args", "main"]

_SECTION_TITLES = {"": "experiment", "data": "data", "train": "training", "al": "active learning",
                   "strategy": "strategy options (each method reads its own)"}
_EXIT_INTERRUPTED = 130  # the shell's status of a process stopped by SIGINT (Ctrl-C)
_EXIT_TERMINATED = 128 + signal.SIGTERM  # ... and by SIGTERM: 143


# --- the parser -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes no abbreviations (``--epoch`` is not ``--epochs``) and says
    what it did not understand in one line, naming the closest valid flag or choice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)  # for the suggestions of error()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        sub = _subcommand(self)
        prog = sub.prog if sub is not None else self.prog
        self.exit(2, f"{self.prog}: error: {_with_suggestion(self, message)} (`{prog} --help` lists the options)\n")


def _subcommand(parser: argparse.ArgumentParser) -> argparse.ArgumentParser | None:
    """The parser of the subcommand named in the arguments ``parser`` parses, if any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for token in getattr(parser, "_argv", []):
                if token in action.choices:
                    return action.choices[token]
    return None


def _flags_in_use(parser: argparse.ArgumentParser) -> list[str]:
    """The flags of ``parser`` and of the subcommand named in the arguments it parses."""
    sub = _subcommand(parser)
    return [s for p in (parser, sub) if p is not None for a in p._actions for s in a.option_strings]


def _with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` plus "did you mean ...?" for an unknown flag or an invalid choice."""
    if message.startswith("unrecognized arguments: "):
        tokens = message.split(": ", 1)[1].split()
        flag = next((t for t in tokens if t.startswith("-")), None)
        if flag is None:
            return message
        close = difflib.get_close_matches(flag.split("=")[0], _flags_in_use(parser), n=1)
        return f"unrecognized argument {flag}" + (f"; did you mean {close[0]}?" if close else "")
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]  # 3.12.8+
        close = difflib.get_close_matches(m.group(1), choices, n=1)
        if close:
            return f"{message}; did you mean '{close[0]}'?"
    return message


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tidal", description="TiDAL: Training Dynamics for Active Learning (ICCV 2023).")
    p.add_argument("--version", action="version", version=f"tidal {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error instead of one line (also after the command, "
                        "`tidal run ... --debug`, or TIDAL_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an active-learning experiment and store its results",
                         description="Run every (dataset, imbalance, seed, method) of an experiment; each finished "
                                     "cycle is stored in OUT/results.sqlite, and re-running the same command "
                                     "continues where it stopped. Flags override the preset (or --config file); "
                                     "each says its value in the presets.")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="starting configuration: 'quick' (CPU-sized, default) or 'paper' (paper §5.1)")
    run.add_argument("--config", metavar="FILE",
                     help="TOML or YAML file with the experiment's fields (see README); flags override it")
    run.add_argument("--out", required=True, help="run directory for results.sqlite and the report")
    groups = {section: run.add_argument_group(_SECTION_TITLES.get(section, section))
              for section, _ in config_sections()}
    for flag in config_flags():
        groups[flag.section].add_argument(*flag.flags, dest=flag.dest, default=argparse.SUPPRESS, **flag.kwargs)
    g = run.add_argument_group("machine and output")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="train N runs at once in worker processes, each with (torch threads // N) threads, "
                        "where torch threads is OMP_NUM_THREADS if set, else the number of cores (waiting threads "
                        "sleep: OMP_WAIT_POLICY=PASSIVE unless set); the numbers depend on the thread count and "
                        "equal a serial run with that many threads; with --device cuda they share the GPU "
                        "(default: 1, no workers). With --backend ray: the CPUs of the local Ray (default: all), "
                        "and the runs that share each GPU (default: 1)")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this machine (serially, or --jobs processes); ray: each run is a Ray task, the "
                        "results are written here (pip install -e '.[ray]') (default: local)")
    g.add_argument("--address", metavar="HOST:PORT",
                   help="with --backend ray: the Ray cluster to send the runs to (default: start a local Ray and "
                        "stop it at the end)")
    g.add_argument("--dist-backend", choices=["nccl", "gloo"], default=None,
                   help="under torchrun (several processes train each run, docs/distributed.md): the "
                        "torch.distributed backend (default: nccl on CUDA, gloo on the CPU)")
    g.add_argument("--quiet", action="store_true", help="no progress bars (prints one line per cycle)")
    g.add_argument("--mlflow", action="store_true", help="also log per-cycle metrics to MLflow (pip install mlflow)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log per-cycle metrics to TensorBoard in OUT/tensorboard (pip install tensorboard)")
    g.add_argument("--track-td", action="store_true",
                   help="paper Figure 7: for methods that predict TD, store per epoch the test-set KL of the actual "
                        "TD to the predicted TD and to the snapshot; costs one test-set inference per epoch, changes "
                        "no result")

    rep = sub.add_parser("report", help="rewrite report.md, report.html, figures/, results.csv and results.json "
                                        "of a run directory, or a labelling project's report.html",
                         description="For a labelling project (tidal init): write PROJECT/report.html (accuracy per "
                                     "round, labels per class, the last round's images). For a run directory: rewrite "
                                     "RUN_DIR/report.md, report.html (one self-contained page), "
                                     "figures/*.png (with matplotlib), results.csv and results.json from the stored "
                                     "results alone (the database is opened read-only), including Figure 7 (runs "
                                     "with --track-td) and Figure 2 (RUN_DIR/analysis/*.npz from `tidal "
                                     "analyze-scores`).")
    rep.add_argument("run_dir", metavar="RUN_DIR",
                     help="a `tidal run --out` or `tidal analyze-scores --out` directory, or a labelling project "
                          "(`tidal init`: writes PROJECT/report.html)")
    rep.add_argument("--reference", metavar="METHOD", default=None,
                     help="the method the paired forest plot compares every other with (default: random where it "
                          "ran, else the first method); must be a method stored in RUN_DIR")
    _add_analyze_parser(sub)
    _add_project_parsers(sub)
    _add_labelstudio_parsers(sub)
    sub.add_parser("methods", help="list the registered selection strategies (--methods values)")
    sub.add_parser("datasets", help="list the registered data sources (--dataset values)",
                   description="One line per source: its --dataset spec (NAME, or NAME:PATH) and what it reads.")
    sub.add_parser("models", help="list the registered models (--model values; also auto and package.module:function)",
                   description="One line per model: its --model name, the inputs it takes (images (C, H, W), vectors "
                               "(D,)) and what it is; then 'auto'. --model also takes package.module:function, a "
                               "function of yours returning an nn.Module for num_classes.")
    for command in sub.choices.values():  # `tidal run ... --debug` works as well as `tidal --debug run ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of an error instead of one line (also: TIDAL_DEBUG=1)")
    return p


def _add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    quick = PRESETS["quick"].train
    ana = sub.add_parser(
        "analyze-scores", help="paper Figure 2: snapshot vs. TD-based uncertainty scores after long-tailed training",
        description="Train TiDAL on SIZE samples of the long-tailed pool, then store each sample's label and its "
                    "snapshot scores H(p), M(p) and TD-based scores (actual, predicted and calibrated predicted TD) in "
                    "OUT/analysis/scores_<dataset>_ir<IR>_seed<seed>.npz, and print how well each score tells "
                    "tail- from head-class samples (AUROC). `tidal report OUT` then draws Figure 2.")
    ana.add_argument("--out", required=True, help="run directory (a `tidal run --out` directory, or a new one)")
    ana.add_argument("--dataset", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    ana.add_argument("--imbalance", type=float, default=10.0, help="imbalance ratio of the pool, >= 1 (default: 10)")
    ana.add_argument("--seed", type=int, default=0, help="seed of the pool, the slice and the model (default: 0)")
    ana.add_argument("--size", type=int, default=3000, help="long-tailed samples to train on (default: 3000)")
    ana.add_argument("--epochs", type=int, help=f"training epochs (default: the quick preset's {quick.epochs})")
    ana.add_argument("--width", type=int, help=f"ResNet-18 base width (default: the quick preset's {quick.width})")
    ana.add_argument("--method", default="tidal-entropy",
                     help="the TiDAL strategy whose objective trains, e.g. tidal-detached-entropy (its module behind a "
                          "stop-gradient); another than tidal-entropy adds _METHOD to the file name "
                          "(default: tidal-entropy)")
    ana.add_argument("--data-dir", help="folder with the dataset files (default: as for `tidal run`)")
    ana.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    ana.add_argument("--quiet", action="store_true", help="no progress bar")


_PROJECT_SECTIONS = ("train", "strategy")  # the configuration sections `tidal init` takes flags of


def _add_project_parsers(sub: argparse._SubParsersAction) -> None:
    """`tidal init / label / query / status`: the labelling workflow (tidal.project)."""
    init = sub.add_parser(
        "init", help="create a labelling project over a pool of your images",
        description="Create PROJECT (a new or empty directory) over a pool of samples: a folder of images (any tree; "
                    "an image under a subfolder named like a class counts as labelled), an npz file or a named "
                    "dataset. Running it again on the same project rescans the pool, adds new images and lists the "
                    "ones that are gone (queries leave them out; their labels stay stored); --moved points it at its "
                    "pool's new place. Training flags start from the quick preset.")
    init.add_argument("project", metavar="PROJECT", help="the project directory")
    init.add_argument("--data", required=True, metavar="SOURCE",
                      help="the pool: folder:PATH (a tree of images), npz:PATH, or a dataset name (`tidal datasets`)")
    init.add_argument("--classes", required=True, nargs="+", metavar="NAME", help="the class names, at least 2")
    init.add_argument("--method", default="tidal-entropy", help="default strategy of `tidal query` (default: "
                                                                 "tidal-entropy; `tidal methods` lists them)")
    init.add_argument("--holdout", metavar="FOLDER|CSV",
                      help="labelled images to report accuracy on: FOLDER/<class>/*.png, or a CSV path,label "
                           "(paths relative to the CSV); npz and named pools use their test split")
    init.add_argument("--seed", type=int, default=0, help="default seed of the queries (default: 0)")
    init.add_argument("--image-size", type=int, metavar="N",
                      help="resize and centre-crop every image to N x N pixels (needed when sizes differ)")
    init.add_argument("--image-url", metavar="TEMPLATE",
                      help="the image reference of a Label Studio task, with {path} (relative to the pool folder), "
                           "{abspath} or {pool} (the pool folder's name), URL-quoted; no other field, a literal brace "
                           "written {{ or }} (default: /data/local-files/?d={pool}/{path}: Label Studio's local files "
                           "with the pool's parent folder as document root; docs/labelstudio.md). Given again on an "
                           "existing project, it replaces the template of later rounds")
    init.add_argument("--moved", action="store_true",
                      help="the project's pool folder (or npz file) moved to --data's path: point the project at it "
                           "(images keep their ids by their paths inside the folder; --holdout, when given, replaces "
                           "the holdout). Without it another path is refused; the same folder written another way "
                           "(pool/, ./pool, $PWD/pool) is the same pool")
    g = init.add_argument_group("training and strategy settings (quick preset values unless given)")
    for flag in config_flags():
        if flag.section in _PROJECT_SECTIONS:
            g.add_argument(*flag.flags, dest=flag.dest, default=argparse.SUPPRESS, **flag.kwargs)

    lab = sub.add_parser(
        "label", help="import labels (CSV id,label or path,label, or a Label Studio export) into a project",
        description="Import answers into PROJECT: a UTF-8 CSV (or TSV) with a header naming id (or path) and label "
                    "(a round's to_label.csv with its label column filled in is one), or a Label Studio export (JSON, "
                    "JSON-MIN, CSV or TSV). Every answer is checked before anything is stored; importing a file twice "
                    "changes nothing.")
    lab.add_argument("project", metavar="PROJECT", help="the project directory")
    lab.add_argument("file", metavar="FILE", help="the labels file")
    lab.add_argument("--relabel", action="store_true", help="let the file change labels stored before")

    q = sub.add_parser(
        "query", help="train on the labels so far and ask for the next k labels",
        description="Run the next round of PROJECT: train on every label so far (the first round, with no labels, "
                    "draws k at random), score the unlabeled pool with the strategy and write "
                    "PROJECT/rounds/NNN/to_label.csv and tasks.json (Label Studio). The same labels and seed give "
                    "the same round; a killed query stores nothing. Pool files deleted since init are left out (never "
                    "selected; labelled ones not trained on, their labels kept) and listed in rounds/NNN/missing.txt.")
    q.add_argument("project", metavar="PROJECT", help="the project directory")
    q.add_argument("-k", type=int, required=True, help="samples to ask labels for")
    q.add_argument("--method", help="strategy of this round (default: the project's)")
    q.add_argument("--subset", type=int, metavar="S", help="score a random subset of S unlabeled samples (default: all)")
    q.add_argument("--seed", type=int, help="seed of this round (default: the project's)")
    q.add_argument("--retrain", choices=("scratch", "continue"), default="scratch",
                   help="train from scratch (the paper, default) or continue from the last round's weights")
    q.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    q.add_argument("--data-dir", help="folder of a named dataset's files (default: as for `tidal run`)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    st = sub.add_parser("status", help="a project's labels per class, rounds and holdout accuracy",
                        description="Print PROJECT's labels per class, its rounds (method, labels trained on, holdout "
                                    "accuracy, final training loss, time; a warning for a round whose model ended "
                                    "near chance) and what is still unlabeled. Reads only.")
    st.add_argument("project", metavar="PROJECT", help="the project directory")


def _add_labelstudio_parsers(sub: argparse._SubParsersAction) -> None:
    """`tidal serve` and `tidal labelstudio push / connect` (docs/labelstudio.md)."""
    sv = sub.add_parser(
        "serve", help="a Label Studio ML backend: orders the annotators' queue, pre-annotates, retrains as they label",
        description="Serve PROJECT as a Label Studio ML backend (GET /health, POST /setup, /predict, /webhook, "
                    "/train). Annotations arriving by webhook are validated like `tidal label` and stored in the "
                    "project; Label Studio's training call runs a round of `tidal query` in the background (one at "
                    "a time; calls meanwhile merge into one follow-up), then its predictions and model_version are "
                    "pushed to Label Studio (with --label-studio and a token in $LABEL_STUDIO_API_KEY). With "
                    "$TIDAL_SERVE_SECRET set, every request must carry it (the basic auth password, or "
                    "Authorization: Bearer SECRET). "
                    "Start Label Studio with ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false to let it call a "
                    "backend on this machine (docs/labelstudio.md, \"Label in Label Studio\").")
    sv.add_argument("project", metavar="PROJECT", help="the project directory")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=9090, help="port (default: 9090)")
    sv.add_argument("--label-studio", metavar="URL", help="Label Studio's URL, to push predictions and model_version "
                                                          "after each retrain (token: $LABEL_STUDIO_API_KEY)")
    sv.add_argument("--ls-project", type=int, metavar="ID", help="the Label Studio project's id (default: learnt "
                                                                  "from Label Studio's /setup call)")
    sv.add_argument("--push", type=int, default=200, metavar="N",
                    help="predictions pushed after a retrain: the N most informative candidates (default: 200)")
    sv.add_argument("--top", type=int, metavar="K", help="candidates each retrain scores (-k of its round; default: "
                                                         "every unlabeled sample, so /predict answers for any task)")
    sv.add_argument("--method", help="strategy (default: the project's)")
    sv.add_argument("--retrain", choices=("scratch", "continue"), default="scratch",
                    help="each retrain from scratch (default) or from the last round's weights")
    sv.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")

    ls = sub.add_parser("labelstudio", help="put a round into Label Studio, or connect `tidal serve` to a project",
                        description="Talk to a running Label Studio through its REST API; the token comes from "
                                    "$LABEL_STUDIO_API_KEY (a Personal Access Token: Account & Settings > Personal "
                                    "Access Token).")
    lsub = ls.add_subparsers(dest="ls_command", required=True, metavar="ACTION")
    push = lsub.add_parser("push", help="import a round's tasks and set the project's model_version to the round's",
                           description="Import round N's tasks.json (default: the latest round) into the Label Studio "
                                       "project (samples already there get the round's prediction, not a second "
                                       "task) and set the project's model_version, so the round is pre-annotated "
                                       "and ordered (Uncertainty sampling, or the prediction score column) for any N.")
    push.add_argument("project", metavar="PROJECT", help="the tidal project directory")
    push.add_argument("--url", required=True, help="Label Studio's URL, e.g. http://127.0.0.1:8080")
    push.add_argument("--ls-project", type=int, required=True, metavar="ID", help="the Label Studio project's id")
    push.add_argument("--round", type=int, metavar="N", help="the round to push (default: the latest)")
    con = lsub.add_parser("connect", help="connect `tidal serve` as the project's ML backend, with uncertainty "
                                          "sampling and a retrain every N annotations",
                          description="Add the ML backend (POST /api/ml; Label Studio then sends the project's "
                                      "annotations to BACKEND/webhook), set sampling to Uncertainty sampling and, "
                                      "with --every, min_annotations_to_start_training. With $TIDAL_SERVE_SECRET set, "
                                      "the backend is called with it.")
    con.add_argument("--url", required=True, help="Label Studio's URL, e.g. http://127.0.0.1:8080")
    con.add_argument("--ls-project", type=int, required=True, metavar="ID", help="the Label Studio project's id")
    con.add_argument("--backend", default="http://127.0.0.1:9090", help="tidal serve's URL (default: "
                                                                         "http://127.0.0.1:9090)")
    con.add_argument("--every", type=int, metavar="N", help="retrain after every N annotations")


def _labelstudio_command(args: argparse.Namespace) -> int:
    import os

    from tidal.project.lsapi import TOKEN_ENV

    token = os.environ.get(TOKEN_ENV, "")
    secret = os.environ.get("TIDAL_SERVE_SECRET") or None
    if args.command == "serve":
        from tidal.project.serve import serve

        serve(args.project, host=args.host, port=args.port, label_studio=args.label_studio, token=token,
              ls_project=args.ls_project, push=args.push, top=args.top, method=args.method, retrain=args.retrain,
              device=args.device, secret=secret)
        return 0
    if args.ls_command == "push":
        from tidal.project.lsapi import push_round

        r = push_round(args.project, url=args.url, token=token, ls_project=args.ls_project, round=args.round)
        version = (f"; model_version is now {r.model_version!r}" if r.model_version else
                   " (a random round: no predictions, model_version unchanged)")
        print(f"round {r.round}: {r.imported} tasks imported, {r.predicted} tasks already there got its prediction"
              f"{version}")
        return 0
    from tidal.project.lsapi import connect_backend

    b = connect_backend(url=args.url, token=token, ls_project=args.ls_project, backend=args.backend, every=args.every,
                        secret=secret)
    every = f", a retrain every {args.every} annotations" if args.every else ""
    print(f"Label Studio project {args.ls_project}: ML backend {b.get('id', '?')} at {args.backend}, uncertainty "
          f"sampling{every}")
    return 0


def _project_command(args: argparse.Namespace) -> int:
    """Run `tidal init / label / query / status` (the library does the work)."""
    if args.command == "init":
        from tidal.project.project import SKIPPED_NAME, init_project

        sections: dict[str, dict[str, Any]] = {s: {} for s in _PROJECT_SECTIONS}
        for flag in config_flags():
            if flag.section in _PROJECT_SECTIONS and hasattr(args, flag.dest):
                value = getattr(args, flag.dest)
                sections[flag.section][flag.name] = tuple(value) if isinstance(value, list) else value
        r = init_project(args.project, args.data, args.classes, method=args.method, holdout=args.holdout,
                         seed=args.seed, image_size=args.image_size, image_url=args.image_url,
                         train=sections["train"], strategy=sections["strategy"], moved=args.moved)
        if r.skipped:
            print(f"warning: {len(r.skipped)} files in the pool are not readable images and were skipped; the list "
                  f"is in {Path(args.project) / SKIPPED_NAME}", file=sys.stderr)
        if r.missing:
            labelled = sum(1 for _, had in r.missing if had)
            kept = (f"; {labelled} of them labelled: the labels stay stored, not trained on while the files are "
                    "gone") if labelled else ""
            print(f"warning: {len(r.missing)} of the project's images are gone from the pool folder "
                  f"({', '.join(repr(p) for p, _ in r.missing[:3])}{' ...' if len(r.missing) > 3 else ''}): queries "
                  f"leave them out{kept}; restore them, or if the pool moved, run this with its new path and --moved",
                  file=sys.stderr)
        what = "created" if r.created else f"rescanned ({r.new_samples} new samples)"
        gone = f", {len(r.missing)} missing" if r.missing else ""
        print(f"project {args.project} {what}: {r.samples} samples{gone}, {r.labeled} labelled, holdout {r.holdout}")
        print(f"next: tidal query {args.project} -k 100")
        return 0
    if args.command == "label":
        from tidal.project.answers import import_labels

        r = import_labels(args.project, args.file, relabel=args.relabel)
        blank = f", {r.blank} rows without a label skipped" if r.blank else ""
        print(f"{args.file} ({r.format}): {r.new} new labels, {r.changed} changed, {r.unchanged} already stored"
              f"{blank}")
        return 0
    if args.command == "query":
        from tidal.project.query import query_project
        from tidal.project.status import pending_labels

        last, pending, selected = pending_labels(args.project)
        if pending:
            print(f"note: {pending} of round {last}'s {selected} samples are not labelled yet (`tidal label` them "
                  "first); this round may ask for them again", file=sys.stderr)
        rnd, result, out = query_project(args.project, args.k, method=args.method, subset=args.subset, seed=args.seed,
                                         retrain=args.retrain, device=args.device, progress=not args.quiet,
                                         data_dir=args.data_dir)
        if len(result.excluded):
            from tidal.project.query import MISSING_NAME

            labelled = (f"; {result.excluded_labeled} of them labelled: the labels stay stored but were not trained "
                        "on") if result.excluded_labeled else ""
            print(f"warning: {len(result.excluded)} pool files are gone and were left out (listed in "
                  f"{out / MISSING_NAME}){labelled}; restore them, or if the pool moved: `tidal init {args.project} "
                  "--data folder:NEWPATH --classes ... --moved`", file=sys.stderr)
        if result.random:
            print(f"round {rnd}: fewer than 2 labels, so no model to train: drew {len(result.ids)} samples at random")
        else:
            from tidal.project.status import chance_warnings
            from tidal.project.store import DB_NAME as PROJECT_DB, ProjectStore

            if result.fitted:
                print(f"round {rnd} trained with {'; '.join(result.fitted)} (README, \"Presets\")")
            acc = "" if result.accuracy is None else f", holdout accuracy {100 * result.accuracy:.1f}%"
            print(f"round {rnd}: trained on {result.n_labeled} labels{acc}; selected the {len(result.ids)} most "
                  f"informative unlabeled samples")
            with ProjectStore(Path(args.project) / PROJECT_DB, readonly=True) as store:
                for line in chance_warnings([r for r in store.rounds() if r.round == rnd]):
                    print(f"warning: {line}", file=sys.stderr)
        print(f"wrote {out / 'to_label.csv'} and {out / 'tasks.json'}; label them, then `tidal label {args.project} "
              "FILE`")
        return 0
    from tidal.project.status import project_status

    print(project_status(args.project))
    return 0


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The preset (or config file) with every given flag applied (validation happens in the library)."""
    if args.config is not None:
        from tidal.config import load_config_file

        cfg = load_config_file(args.config)
        if args.preset is not None:
            raise ValueError("give either --preset or --config (a config file names its own preset)")
    else:
        cfg = PRESETS[args.preset or "quick"]
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for flag in config_flags():
        if not hasattr(args, flag.dest):  # not given: the preset's (or file's) value stays
            continue
        value = getattr(args, flag.dest)
        value = tuple(value) if isinstance(value, list) else value
        if flag.section:
            sections.setdefault(flag.section, {})[flag.name] = value
        else:
            top[flag.name] = value
    return dataclasses.replace(cfg, **top, **{name: dataclasses.replace(getattr(cfg, name), **fields)
                                              for name, fields in sections.items()})


# --- errors -----------------------------------------------------------------------------------

# SQLite's primary result codes (sqlite3.h) -> what happened to the results database.
_SQLITE_WHAT = {
    3: "permission denied",
    5: "is locked by another process writing to it; wait for it to finish",
    6: "is locked by another process writing to it; wait for it to finish",
    8: "is read-only (file or folder permissions, or a read-only file system); give write access or copy the "
       "run directory",
    10: "could not be read or written (disk I/O error)",
    11: "is corrupt; restore it from a copy or start a new --out directory",
    13: "could not grow: the disk (or quota) is full; free space and run the same command again",
    14: "cannot be opened: check that its folder exists and may be read and written",
    26: "is not an SQLite database (corrupt, or another program's file); start a new --out directory",
}
_SQLITE_MESSAGES = (("locked", 5), ("readonly", 8), ("read-only", 8), ("disk is full", 13), ("malformed", 11),
                    ("not a database", 26), ("unable to open", 14), ("disk i/o", 10))


def _database_error(exc: sqlite3.Error, path: Path | None, project: bool = False) -> str:
    """One line saying what happened to the results database (``project``: to the labelling
    project's database), from the SQLite error code, with a fix that suits it."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    code = code & 0xFF if isinstance(code, int) else next(
        (c for text, c in _SQLITE_MESSAGES if text in str(exc).lower()), None)
    what = "project database" if project else "results database"
    where = f"{what} {path}" if path is not None else what
    text = _SQLITE_WHAT.get(code, "failed")
    if project:
        from tidal.project.store import FIX

        text = {8: _SQLITE_WHAT[8].replace("run directory", "project directory"),
                11: f"is corrupt; restore it from a copy, or {FIX}",
                26: "is not an SQLite database (corrupt, or another program's file); restore it from a copy, "
                    f"or {FIX}",
                }.get(code, text)
    return f"{where} {text} (sqlite: {exc})"


def _failed_database(args: argparse.Namespace) -> tuple[Path | None, bool]:
    """The database the command ``args`` was working on, and whether it is a labelling project's."""
    from tidal.project.store import DB_NAME as PROJECT_DB
    from tidal.results import DB_NAME

    project = getattr(args, "project", None)
    if project is None and args.command == "report" and (Path(args.run_dir) / PROJECT_DB).is_file():
        project = args.run_dir
    if project is not None:
        return Path(project) / PROJECT_DB, True
    where = getattr(args, "out", None) or getattr(args, "run_dir", None)
    return (Path(where) / DB_NAME if where else None), False


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops as after Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


# Seconds a SIGTERM'd process has to stop by itself before the watchdog ends it.
TERM_GRACE_S = float(os.environ.get("TIDAL_TERM_GRACE_S", "10"))


class _TermWatchdog:
    """Ends the process when a SIGTERM has not stopped it within ``grace`` seconds.

    Python runs a signal handler only between bytecodes of the main thread, so a process stuck
    inside a C kernel (a deadlocked thread barrier) never sees the ``_Terminated`` that
    :func:`_raise_terminated` raises. The C-level handler still writes the signal's number to
    the wakeup file descriptor at once; this daemon thread reads it (torch releases the GIL in
    its kernels), waits ``grace`` seconds for the normal stop, then prints what was saved and
    exits with 143 without unwinding. Every cycle is committed in one SQLite transaction, so a
    hard exit loses at most the cycle in progress.
    """

    def __init__(self, saved: Callable[[], str], grace: float) -> None:
        self.saved, self.grace = saved, grace
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="tidal-sigterm-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except OSError:  # closed: the command ended
                return
            if not data:
                return
            if signal.SIGTERM in data:
                time.sleep(self.grace)
                print(f"\nstopped after SIGTERM: still busy {self.grace:g} s later (stuck in a kernel?); "
                      f"{self.saved()}; run the same command again to continue from there", file=sys.stderr, flush=True)
                os._exit(_EXIT_TERMINATED)

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write_fd)
        os.close(self.read_fd)


def _launch() -> Any:
    """torchrun's :class:`tidal.distributed.Launch` of this process, or None when it runs alone (or
    the variables are malformed: the run itself then says so). Rank 0 alone prints errors and
    reports (another rank's failure reaches rank 0, which names it)."""
    if "WORLD_SIZE" not in os.environ:
        return None  # alone, without loading torch
    from tidal.distributed import launched

    try:
        return launched()
    except ValueError:
        return None


# Arguments that name a file or folder: an empty one would silently mean the current directory.
_PATH_DESTS = ("out", "run_dir", "project", "file", "config", "data_dir", "holdout", "weights", "store_dir")


def _empty_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The refusal of the first path argument given as an empty string (``--out ''``), or None."""
    sub = _subcommand(parser) or parser
    for action in sub._actions:
        dest = action.dest.rsplit(".", 1)[-1]  # config flags: "section.field"
        value = getattr(args, action.dest, None) if dest in _PATH_DESTS else None
        if isinstance(value, str) and not value.strip():
            name = action.option_strings[0] if action.option_strings else action.metavar or action.dest
            what = ("a file path" if dest in ("file", "config", "weights")
                    else "a path (`.` for the current directory)")
            return f"{name} {value!r} is an empty path; pass {what}"
    return None


def _debug_env() -> bool:
    """Whether TIDAL_DEBUG asks for tracebacks (set, and not empty, 0, false, no or off)."""
    import os

    return os.environ.get("TIDAL_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


# Seconds a rank other than 0 that failed stays up, so that rank 0 says why (see _let_rank_0_speak).
PEER_GRACE_S = float(os.environ.get("TIDAL_PEER_GRACE_S", "60"))


def main(argv: Sequence[str] | None = None) -> int:
    launch = _launch()
    code = _main(argv, launch)
    if code in (1, 2) and launch is not None and launch.rank != 0:
        _let_rank_0_speak(code)
    return code


def _let_rank_0_speak(code: int) -> None:
    """Under torchrun, a rank other than 0 that failed stays up to ``PEER_GRACE_S`` seconds before
    it exits with ``code``, and exits at once, silently, when torchrun's SIGTERM comes.

    torchrun stops every rank as soon as one exits. Every rank refuses the same bad arguments,
    and rank 0 alone prints the error (it learns the others' errors through the collectives).
    A silent rank that exited first could take rank 0 down before it printed, on a busy machine:
    the user would see only torchrun's summary. Alone, or on rank 0, nothing waits.
    """
    if PEER_GRACE_S <= 0 or threading.current_thread() is not threading.main_thread():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(code))
    try:
        time.sleep(PEER_GRACE_S)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: this one had nothing more to do
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None, launch: Any) -> int:
    """Run the command in ``argv``; its exit status. ``launch``: this process's torchrun rank, or None."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from tidal.errors import TidalError
    if args.command == "run":  # a stopped run says what it left on disk
        from tidal.report.text import saved_cycles

    empty = _empty_path(parser, args)
    if empty is not None:
        print(f"tidal: error: {empty}", file=sys.stderr)
        return 2

    quiet = launch is not None and launch.rank != 0
    debug = args.debug or _debug_env()

    previous, watchdog = None, None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        if args.command in ("run", "query", "analyze-scores"):  # the commands that train
            saved = ((lambda: saved_cycles(args.out)) if args.command == "run" else
                     (lambda: "the round was not stored"))
            watchdog = _TermWatchdog(saved, TERM_GRACE_S)
    try:
        return _run_command(args)
    except KeyboardInterrupt as exc:
        code = _EXIT_TERMINATED if isinstance(exc, _Terminated) else _EXIT_INTERRUPTED
        if quiet:
            pass
        elif args.command == "run":
            # Under torchrun a SIGTERM usually means torchrun is stopping every rank because another one stopped.
            why = " (torchrun stops every rank when one fails)" if isinstance(exc, _Terminated) and launch else ""
            print(f"\ninterrupted{why}: {saved_cycles(args.out)}; run the same command again to continue from there",
                  file=sys.stderr)
        elif args.command == "query":
            print("\ninterrupted: the round was not stored; run the same command again (the same labels and seed "
                  "give the same round)", file=sys.stderr)
        elif args.command == "serve":
            print("\ntidal serve stopped: every label it acknowledged is in the project or in its serve-inbox.jsonl, "
                  "which the next `tidal serve` stores; a retrain that was running stored nothing", file=sys.stderr)
            return 0
        else:
            print("\ninterrupted: nothing was written", file=sys.stderr)
        return code
    except BrokenPipeError:  # `tidal methods | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (TidalError, ValueError, OSError) as exc:
        if debug:
            raise
        if not quiet:
            print(f"tidal: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        if debug:
            raise
        print(f"tidal: error: {_database_error(exc, *_failed_database(args))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - no traceback reaches a user unless asked for (--debug)
        if debug:
            raise
        if not quiet:
            text = " ".join(str(exc).split())
            print(f"tidal: error: {type(exc).__name__}{': ' + text if text else ''} (an unexpected error: run again "
                  "with `tidal --debug ...` or TIDAL_DEBUG=1 for the traceback, and report it)", file=sys.stderr)
        return 1
    finally:
        if watchdog is not None:
            watchdog.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "methods":
        from tidal.strategies import list_strategies, strategy_class

        names = list_strategies()
        width = max(map(len, names))
        for name in names:
            print(f"{name:{width}s}  {strategy_class(name).description}")
        return 0
    if args.command == "datasets":
        from tidal.data.sources import list_sources, source_info

        for spec in list_sources():
            print(f"{spec:14s} {source_info(spec).description}")
        return 0
    if args.command == "models":
        from tidal.models.factory import AUTO_MODELS, list_models, model_info

        for name in list_models():
            print(f"{name:10s} {'/'.join(model_info(name).inputs):15s} {model_info(name).description}")
        print(f"{'auto':10s} {'/'.join(AUTO_MODELS):15s} {', '.join(f'{m} for {k}' for k, m in AUTO_MODELS.items())}")
        return 0
    if args.command in ("init", "label", "query", "status"):
        return _project_command(args)
    if args.command in ("serve", "labelstudio"):
        return _labelstudio_command(args)
    if args.command == "report" and (Path(args.run_dir) / "project.sqlite").is_file():
        from tidal.project.report import write_project_report

        print(f"wrote {write_project_report(args.run_dir)}")
        return 0
    if args.command == "report":
        from tidal.report import write_report

        print(write_report(args.run_dir, reference=args.reference))
        from tidal.results import DB_NAME

        tables = ", results.csv, paired.csv" if (Path(args.run_dir) / DB_NAME).is_file() else ""
        print(f"wrote {args.run_dir}/report.md, report.html, figures/, results.json{tables}")
        return 0
    if args.command == "analyze-scores":
        from tidal.analysis import analyze_scores, format_aurocs

        analysis = analyze_scores(args.out, dataset=args.dataset, imbalance=args.imbalance, seed=args.seed,
                                  size=args.size, epochs=args.epochs, width=args.width, method=args.method,
                                  data_dir=args.data_dir,
                                  device=args.device, progress=not args.quiet)
        print(format_aurocs(analysis))
        print(f"wrote {analysis.path}; `tidal report {args.out}` draws Figure 2 into report.html and figures/")
        return 0
    from tidal.experiment import Backend, run_experiment
    from tidal.report import write_report
    from tidal.report.text import run_summary
    from tidal.results import DB_NAME
    from tidal.tracking import TRACKERS

    config = config_from_args(args)
    summary = run_experiment(config, args.out, device=args.device, progress=not args.quiet, jobs=args.jobs,
                             backend=Backend(args.backend, args.address, args.dist_backend),
                             trackers=[name for name in TRACKERS if getattr(args, name)], track_td=args.track_td)
    if summary.rank != 0:  # torchrun: rank 0 reports
        return 0
    write_report(args.out)
    out = Path(args.out)
    if (out / DB_NAME).is_file():
        print(run_summary(out) + "\n")
    print(f"{summary.ran_cycles} cycles trained, {summary.skipped_cycles} already stored, {summary.seconds:.0f} s")
    print(f"report: {out / 'report.md'}, report.html, figures/ (data: {DB_NAME}, results.csv, results.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
