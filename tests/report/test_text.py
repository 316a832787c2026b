"""The command line's plain text about stored results: aligned columns and a run's summary."""

import dataclasses

from tidal.report.text import run_summary


def _summary_run(tmp_path, accuracies: dict[str, list[float]], losses: dict[str, list[float]]):
    """A run directory holding one seed of each method with these per-cycle accuracies and final losses."""
    from tidal.config import preset
    from tidal.results import DB_NAME, CycleRecord, ResultStore

    cycles = len(next(iter(accuracies.values())))
    cfg = preset("quick", methods=tuple(accuracies))
    cfg = dataclasses.replace(cfg, al=dataclasses.replace(cfg.al, initial=100, budget=50, cycles=cycles))
    with ResultStore(tmp_path / DB_NAME) as store:
        store.bind(cfg)
        for m, accs in accuracies.items():
            for c, acc in enumerate(accs):
                n = 100 + 50 * c
                store.add_cycle(CycleRecord("fashion-mnist", 1.0, m, 0, c, n, acc, [n // 10] * 10, list(range(n)),
                                            [] if c == cycles - 1 else list(range(n, n + 50)),
                                            [] if c == cycles - 1 else [1.0] * 50, 1.0, 0.0, 0.0,
                                            losses[m][c], 1.0e9 + c))
    return tmp_path


def test_run_summary_names_which_vs_random_it_shows(tmp_path):
    """Issue 21 case 23: one collapsed random cycle made the mean relative improvement +50% while
    tidal's final accuracy and area were below random's; the summary shows the last cycle's relative
    improvement beside the mean over cycles 2-4 and names each (the report's definitions)."""
    accs = {"random": [0.5, 0.1, 0.8, 0.85], "tidal-entropy": [0.5, 0.3, 0.6, 0.65]}
    out = _summary_run(tmp_path, accs, {"random": [0.1, 2.3, 0.1, 0.1], "tidal-entropy": [0.1] * 4})
    text = run_summary(out)
    lines = text.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["method"])
    assert "vs random at cycle 4 (%)" in header and "vs random, mean of cycles 2-4 (%)" in header
    row = next(line for line in lines if line.split()[:1] == ["tidal-entropy"]).split()
    final = 100 * (0.65 - 0.85) / 0.85
    mean = 100 * ((0.3 - 0.1) / 0.1 + (0.6 - 0.8) / 0.8 + (0.65 - 0.85) / 0.85) / 3
    assert row[1:5] == ["1", "65.00", f"{final:+.2f}", f"{mean:+.2f}"]
    assert "100 x (acc - acc_random) / acc_random" in text and "averaged over the cycles after" in text
    # the collapsed cycle is named: its loss near ln 10 and its accuracy at chance
    assert "warning: 1 cycle(s) ended near chance" in text
    assert ("    - random seed 0 cycle 2: final training loss 2.30 near ln 10 = 2.30 and accuracy 10.0% near chance "
            "= 10.0%") in text
