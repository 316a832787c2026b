"""``tidal status PROJECT``: the project's state as aligned text, from its database alone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tidal.project.store import DB_NAME, ProjectStore, RoundRecord

__all__ = ["chance_warnings", "format_status", "pending_labels", "project_status"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def chance_warnings(rounds: list[RoundRecord]) -> list[str]:
    """One line per trained round whose model looks like it learned nothing (final training loss near
    ln C or holdout accuracy near chance 1/C: :func:`tidal.report.summary.near_chance`)."""
    from tidal.report.summary import near_chance

    out = []
    for r in rounds:
        why = None if r.random else near_chance(r.final_loss, r.accuracy, len(r.classes))
        if why:
            out.append(f"round {r.round}'s model ended near chance ({why}): it learned (almost) nothing; the "
                       "training settings may not fit this data (README, \"Presets\")")
    return out


def format_status(store: ProjectStore, project: Path) -> str:
    """Labels per class, the rounds (method, labels trained on, holdout accuracy, time), what is unlabeled."""
    from tidal.report.text import aligned  # the report layer (numpy) only when printing, as chance_warnings
    classes = store.classes
    labels = store.labels()
    n = store.num_samples()
    counts = Counter(labels.values())
    rounds = store.rounds()
    settings = store.meta("settings")
    lines = [f"project {project}: {n} samples from {store.meta('source')}, classes {', '.join(classes)}",
             f"  default method {settings['method']}, model {settings['train']['model']}, seed {settings['seed']}",
             "", "labels per class:"]
    rows = [["class", "labels", "share (%)"]]
    for i, c in enumerate(classes):
        rows.append([c, str(counts.get(i, 0)), f"{100 * counts.get(i, 0) / max(len(labels), 1):.1f}"])
    rows.append(["all", str(len(labels)), "100.0" if labels else "0.0"])
    lines += ["  " + line for line in aligned(rows)]
    lines.append(f"  unlabeled: {n - len(labels)} of {n}")
    holdout = len(store.holdout())
    lines += ["", f"rounds ({len(rounds)}; holdout: {f'{holdout} images' if holdout else 'see the rounds'}):"]
    if rounds:
        rows = [["round", "method", "trained on", "selected", "holdout acc. (%)", "final loss", "train (s)",
                 "score (s)", "total (s)"]]
        for r in rounds:
            rows.append([str(r.round), r.method, str(r.n_labeled), str(r.k), _pct(r.accuracy),
                         "-" if r.final_loss is None else f"{r.final_loss:.3f}",
                         f"{r.train_seconds:.1f}", f"{r.score_seconds:.1f}", f"{r.total_seconds:.1f}"])
        lines += ["  " + line for line in aligned(rows)]
        lines += [f"  warning: {w}" for w in chance_warnings(rounds)]
        last = rounds[-1]
        answered = sum(1 for s in last.selections if s.id in labels)
        lines.append(f"  round {last.round}'s selection: {answered} of {len(last.selections)} labelled so far")
    else:
        lines.append("  none yet: `tidal query PROJECT -k 100` asks for the first labels")
    return "\n".join(lines)


def project_status(project: str | Path) -> str:
    """:func:`format_status` of ``project``, read-only (no lock: it may run beside a query)."""
    from tidal.project.project import check_project_dir

    project = Path(project)
    check_project_dir(project, must_exist=True)
    with ProjectStore(project / DB_NAME, readonly=True) as store:
        return format_status(store, project)


def pending_labels(project: str | Path) -> tuple[int, int, int]:
    """``(last round, its selected samples still unlabelled, its selected samples)``; ``(0, 0, 0)``
    before the first round. Read-only."""
    from tidal.project.project import check_project_dir

    project = Path(project)
    check_project_dir(project, must_exist=True)
    with ProjectStore(project / DB_NAME, readonly=True) as store:
        rounds = store.rounds()
        if not rounds:
            return 0, 0, 0
        labels = store.labels()
        last = rounds[-1]
        return last.round, sum(1 for s in last.selections if s.id not in labels), len(last.selections)
