"""The paired comparisons in the written report: section, figure, paired.csv, --reference."""

from __future__ import annotations

import csv
import re

import pytest

from tidal.cli import main
from tidal.report import write_report
from tidal.results import DB_NAME, ResultStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory, synth):
    """The synthetic run (random, tidal-entropy, entropy, margin; seeds 0-2) plus tidal-entropy seed 3
    without a counterpart and a `solo` method that ran one seed."""
    extra = [synth.make_record("tidal-entropy", 3, c) for c in range(len(synth.N_LABELED))]
    extra += [synth.make_record("random", 0, c) for c in range(len(synth.N_LABELED))]
    for r in extra[-len(synth.N_LABELED):]:
        r.method = "solo"
    return synth.build_run(tmp_path_factory.mktemp("paired"), extra)


def test_report_has_the_paired_section_figure_and_csv(paired_run, synth):
    write_report(paired_run)
    md = (paired_run / "report.md").read_text()
    assert "### Paired comparisons" in md and "| method | vs random | vs entropy | vs margin | vs solo |" in md
    # tidal-entropy gains (0.04, 0.05, 0.06) + 0.006 s - 0.01 s over random: its interval lies above zero
    assert re.search(r"^\| tidal-entropy \| W \+\d", md, re.M)
    # the seed without a counterpart is listed, once per unordered pair
    assert md.count("| random | tidal-entropy | 3 | no random run |") == 1
    assert "| tidal-entropy | random | 3 | no" not in md and "| random | solo | 1, 2 | no solo run |" in md
    png = paired_run / "figures" / "fashion-mnist-ir10-paired.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "figures/fashion-mnist-ir10-paired.png" in md
    assert "Paired differences against random (method - random, pp)" in md
    with open(paired_run / "paired.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 4  # every ordered pair of the five methods compares on at least one seed
    row = next(r for r in rows if (r["a"], r["b"]) == ("tidal-entropy", "random"))
    assert row["seeds"] == "0 1 2" and row["auc_verdict"] == "W" and row["auc_wilcoxon_p"] == ""
    solo = next(r for r in rows if (r["a"], r["b"]) == ("solo", "random"))
    assert solo["seeds"] == "0" and solo["auc_lo"] == "" and float(solo["auc_mean"]) == pytest.approx(0.0)


def test_paired_area_differences_match_the_hand_computed_curves(paired_run, synth):
    with ResultStore(paired_run / DB_NAME, readonly=True) as store:
        from tidal.report import paired_comparisons

        (ps,) = paired_comparisons(store.records())
    n = synth.N_LABELED
    for seed in synth.SEEDS:
        acc = {m: [100 * synth.accuracy(m, seed, c) for c in range(len(n))] for m in ("margin", "entropy")}
        d = [a - b for a, b in zip(acc["margin"], acc["entropy"])]
        area = sum((n[i + 1] - n[i]) * (d[i] + d[i + 1]) / 2 for i in range(len(n) - 1)) / (n[-1] - n[0])
        assert ps.pair("margin", "entropy").auc.values[seed] == pytest.approx(area)
        assert ps.pair("margin", "entropy").final.values[seed] == pytest.approx(d[-1])


def test_reference_draws_the_forest_plot_against_another_method(paired_run):
    write_report(paired_run, reference="entropy")
    assert "Paired differences against entropy (method - entropy, pp)" in (paired_run / "report.md").read_text()


def test_unknown_reference_quotes_it_and_lists_the_methods(paired_run, capsys):
    with pytest.raises(ValueError, match=r"reference='rando' is not a method of .* \(did you mean 'random'\?\); "
                                         r"its methods: entropy, margin, random, solo, tidal-entropy"):
        write_report(paired_run, reference="rando")
    code = main(["report", str(paired_run), "--reference", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "reference='nope' is not a method" in err and "Traceback" not in err
    assert main(["report", str(paired_run), "--reference", "margin"]) == 0
    out = capsys.readouterr().out
    assert "paired.csv" in out and "| margin | W +" not in out.split("paired")[0]
    assert "Paired differences against margin" in (paired_run / "report.md").read_text()
