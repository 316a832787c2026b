"""Command-line front end: parses arguments, then makes one library call.

    tidal run --preset quick --methods tidal-entropy random --seeds 0 1 --out runs/demo
    tidal report runs/demo
    tidal analyze-scores --imbalance 10 --out runs/demo
    tidal methods
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import sys
from collections.abc import Sequence

from tidal.config import PRESETS, ExperimentConfig

__all__ = ["main", "build_parser", "config_from_args"]

# CLI flag -> (config section, field); None section = top level.
_OVERRIDES = {
    "datasets": (None, "datasets"),
    "imbalances": (None, "imbalances"),
    "methods": (None, "methods"),
    "seeds": (None, "seeds"),
    "initial": ("al", "initial"),
    "budget": ("al", "budget"),
    "cycles": ("al", "cycles"),
    "subset": ("al", "subset"),
    "retrain": ("al", "retrain"),
    "epochs": ("train", "epochs"),
    "lr": ("train", "lr"),
    "batch_size": ("train", "batch_size"),
    "width": ("train", "width"),
    "weight_decay": ("train", "weight_decay"),
    "momentum": ("train", "momentum"),
    "crop_padding": ("train", "crop_padding"),
    "data_dir": ("data", "data_dir"),
    "pool_limit": ("data", "pool_limit"),
    "test_limit": ("data", "test_limit"),
    "tidal_weight": ("strategy", "tidal_weight"),
    "mc_samples": ("strategy", "mc_samples"),
    "dropout": ("strategy", "dropout"),
    "lloss_weight": ("strategy", "lloss_weight"),
    "lloss_margin": ("strategy", "lloss_margin"),
    "lloss_stop_at": ("strategy", "lloss_stop_at"),
    "cal_threshold": ("strategy", "cal_threshold"),
    "vaal_epochs": ("strategy", "vaal_epochs"),
    "vaal_latent_dim": ("strategy", "vaal_latent_dim"),
}


def _method_help() -> str:
    from tidal.strategies import list_strategies, strategy_class

    names = [f"{n} (semi-supervised)" if strategy_class(n).semi_supervised else n for n in list_strategies()]
    return "strategies, any of: " + ", ".join(names) + "; `tidal methods` describes each"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tidal", description="TiDAL: Training Dynamics for Active Learning (ICCV 2023).")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an active-learning experiment and store its results",
                         description="Run every (dataset, imbalance, seed, method) of an experiment; each finished "
                                     "cycle is stored in OUT/results.sqlite, and re-running the same command "
                                     "continues where it stopped. Flags override the preset.")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="starting configuration: 'quick' (CPU-sized, default) or 'paper' (paper §5.1)")
    run.add_argument("--config", metavar="FILE",
                     help="TOML or YAML file with the experiment's fields (see README); flags override it")
    run.add_argument("--out", required=True, help="run directory for results.sqlite and the report")
    g = run.add_argument_group("experiment")
    g.add_argument("--dataset", dest="datasets", nargs="+", metavar="NAME", help="dataset(s): fashion-mnist")
    g.add_argument("--imbalance", dest="imbalances", nargs="+", type=float, metavar="IR",
                   help="imbalance ratio(s) N_max/N_min of the training pool, >= 1 (paper: 1, 10, 100)")
    g.add_argument("--methods", nargs="+", metavar="NAME", help=_method_help())
    g.add_argument("--seeds", nargs="+", type=int, metavar="N", help="one trial per seed")
    g = run.add_argument_group("active learning")
    g.add_argument("--initial", type=int, help="random initial labeled set size")
    g.add_argument("--budget", type=int, help="samples labeled per cycle (top-k)")
    g.add_argument("--cycles", type=int, help="training rounds (the last selects nothing)")
    g.add_argument("--subset", type=int, help="random unlabeled subset scored per cycle (paper: 10000)")
    g.add_argument("--retrain", choices=["scratch", "continue"],
                   help="'scratch': a fresh model each cycle (paper); 'continue': keep training the last model")
    g = run.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="epochs per cycle (lr decays x0.1 after 80%%)")
    g.add_argument("--lr", type=float, help="initial SGD learning rate (paper: 0.1)")
    g.add_argument("--batch-size", type=int, help="training batch size (paper: 128)")
    g.add_argument("--width", type=int, help="ResNet-18 base width (paper: 64)")
    g.add_argument("--weight-decay", type=float, help="SGD weight decay (paper: 5e-4)")
    g.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    g.add_argument("--crop-padding", type=int, help="random-crop padding in pixels (0 = no crop)")
    g = run.add_argument_group("strategy options (each method reads its own)")
    g.add_argument("--lambda", dest="tidal_weight", type=float,
                   help="TiDAL's λ, weight of the TD-prediction loss (paper: 1.0)")
    g.add_argument("--mc-samples", type=int, help="BALD: stochastic forward passes T (default 10)")
    g.add_argument("--dropout", type=float, help="BALD: dropout before the classifier, training and scoring (default 0.5)")
    g.add_argument("--lloss-weight", type=float, help="Learning Loss: weight of the ranking loss (default 1.0)")
    g.add_argument("--lloss-margin", type=float, help="Learning Loss: ranking margin ξ (default 1.0)")
    g.add_argument("--lloss-stop-at", type=float,
                   help="Learning Loss: fraction of epochs after which its gradient to the backbone stops (default 0.6)")
    g.add_argument("--cal-threshold", type=float,
                   help="CAL: fraction of epochs correct below which a labeled sample counts as uncertain (default 0.5)")
    g.add_argument("--vaal-epochs", type=int, help="VAAL/TA-VAAL: VAE + discriminator passes over the subset (quick preset 2, paper 10)")
    g.add_argument("--vaal-latent-dim", type=int, help="VAAL/TA-VAAL: VAE latent size (default 32)")
    g = run.add_argument_group("data and machine")
    g.add_argument("--data-dir", help="folder with the dataset files (default: $TIDAL_DATA, the Debian package "
                                      "location, then ~/.cache/tidal)")
    g.add_argument("--no-download", action="store_true", help="never download missing dataset files")
    g.add_argument("--pool-limit", type=int, help="use a random slice of N training images as the pool")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once in worker processes, each with (torch threads // N) threads; the "
                        "numbers equal a serial run with that many threads (default: 1, no workers)")
    g.add_argument("--quiet", action="store_true", help="no progress bars (prints one line per cycle)")
    g.add_argument("--mlflow", action="store_true", help="also log per-cycle metrics to MLflow (pip install mlflow)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log per-cycle metrics to TensorBoard in OUT/tensorboard (pip install tensorboard)")
    g = run.add_argument_group("analysis")
    g.add_argument("--track-td", action="store_true",
                   help="paper Figure 7: for methods that predict TD, store per epoch the test-set KL of the actual "
                        "TD to the predicted TD and to the snapshot; costs one test-set inference per epoch, changes "
                        "no result")

    rep = sub.add_parser("report", help="rewrite report.md, report.html, figures/, results.csv and results.json "
                                        "of a run directory",
                         description="Rewrite RUN_DIR/report.md, report.html (one self-contained page), "
                                     "figures/*.png (with matplotlib), results.csv and results.json from the stored "
                                     "results alone, including Figure 7 (runs with --track-td) and Figure 2 "
                                     "(RUN_DIR/analysis/*.npz from `tidal analyze-scores`).")
    rep.add_argument("run_dir", metavar="RUN_DIR",
                     help="a `tidal run --out` or `tidal analyze-scores --out` directory")
    _add_analyze_parser(sub)
    sub.add_parser("methods", help="list the registered selection strategies")
    sub.add_parser("datasets", help="list the supported datasets")
    return p


def _add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    quick = PRESETS["quick"].train
    ana = sub.add_parser(
        "analyze-scores", help="paper Figure 2: snapshot vs. TD-based uncertainty scores after long-tailed training",
        description="Train TiDAL on SIZE samples of the long-tailed pool, then store each sample's label and its "
                    "snapshot scores H(p), M(p) and TD-based scores (actual and predicted TD) in "
                    "OUT/analysis/scores_<dataset>_ir<IR>_seed<seed>.npz, and print how well each score tells "
                    "tail- from head-class samples (AUROC). `tidal report OUT` then draws Figure 2.")
    ana.add_argument("--out", required=True, help="run directory (a `tidal run --out` directory, or a new one)")
    ana.add_argument("--dataset", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    ana.add_argument("--imbalance", type=float, default=10.0, help="imbalance ratio of the pool, >= 1 (default: 10)")
    ana.add_argument("--seed", type=int, default=0, help="seed of the pool, the slice and the model (default: 0)")
    ana.add_argument("--size", type=int, default=3000, help="long-tailed samples to train on (default: 3000)")
    ana.add_argument("--epochs", type=int, help=f"training epochs (default: the quick preset's {quick.epochs})")
    ana.add_argument("--width", type=int, help=f"ResNet-18 base width (default: the quick preset's {quick.width})")
    ana.add_argument("--data-dir", help="folder with the dataset files (default: as for `tidal run`)")
    ana.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    ana.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The preset (or config file) with every given flag applied (validation happens in the library)."""
    if args.config is not None:
        from tidal.config import load_config_file

        cfg = load_config_file(args.config)
        if args.preset is not None:
            raise ValueError("give either --preset or --config (a config file names its own preset)")
    else:
        cfg = PRESETS[args.preset or "quick"]
    sections = {"data": cfg.data, "train": cfg.train, "al": cfg.al, "strategy": cfg.strategy}
    top = {}
    for flag, (section, field) in _OVERRIDES.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if section is None:
            top[field] = tuple(value)
        else:
            sections[section] = dataclasses.replace(sections[section], **{field: value})
    if args.no_download:
        sections["data"] = dataclasses.replace(sections["data"], download=False)
    return dataclasses.replace(cfg, **top, **sections)


def _saved_cycles(out: str | None) -> str:
    """What an interrupted run left on disk, in words."""
    from pathlib import Path

    from tidal.results import DB_NAME, ResultStore

    if out is None or not (Path(out) / DB_NAME).is_file():
        return "nothing was saved yet"
    with ResultStore(Path(out) / DB_NAME) as store:
        recs = store.records()
    runs = {(r.dataset, r.imbalance, r.method, r.seed) for r in recs}
    return f"{len(recs)} finished cycles of {len(runs)} (method, seed) runs are saved in {Path(out) / DB_NAME}"


def main(argv: Sequence[str] | None = None) -> int:
    from tidal.errors import TidalError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            from tidal.strategies import list_strategies, strategy_class

            for name in list_strategies():
                print(f"{name:20s} {strategy_class(name).description}")
            return 0
        if args.command == "datasets":
            from tidal.data import DATASETS

            print("\n".join(sorted(DATASETS)))
            return 0
        if args.command == "report":
            from tidal.report import write_report

            print(write_report(args.run_dir))
            print(f"wrote {args.run_dir}/report.md, report.html, figures/, results.csv, results.json")
            return 0
        if args.command == "analyze-scores":
            from tidal.analysis import analyze_scores, format_aurocs

            analysis = analyze_scores(args.out, dataset=args.dataset, imbalance=args.imbalance, seed=args.seed,
                                      size=args.size, epochs=args.epochs, width=args.width, data_dir=args.data_dir,
                                      device=args.device, progress=not args.quiet)
            print(format_aurocs(analysis))
            print(f"wrote {analysis.path}; `tidal report {args.out}` draws Figure 2 into report.html and figures/")
            return 0
        from tidal.experiment import run_experiment
        from tidal.report import write_report

        config = config_from_args(args)
        summary = run_experiment(config, args.out, device=args.device, progress=not args.quiet,
                                 mlflow=args.mlflow, tensorboard=args.tensorboard, track_td=args.track_td,
                                 jobs=args.jobs)
        print(write_report(args.out))
        print(f"{summary.ran_cycles} cycles trained, {summary.skipped_cycles} already stored, "
              f"{summary.seconds:.0f} s; wrote {args.out}/results.sqlite, report.md, report.html, figures/, "
              "results.csv, results.json")
        return 0
    except KeyboardInterrupt:
        if args.command == "run":
            print(f"\ninterrupted: {_saved_cycles(args.out)}; run the same command again to continue from there",
                  file=sys.stderr)
        else:
            print("\ninterrupted: nothing was written", file=sys.stderr)
        return 130
    except (TidalError, ValueError, OSError) as exc:
        print(f"tidal: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"tidal: error: results database: {exc} (is another `tidal run` writing to the same --out? "
              "run one process per directory with --jobs N, or give each process its own methods/seeds)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
