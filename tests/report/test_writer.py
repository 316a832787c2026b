"""write_report on the synthetic run directory: files, figures, bold best method, errors."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
import warnings

import pytest

from tidal.errors import RunDirectoryError
from tidal.report import format_markdown, summarize, write_report
from tidal.report.tables import overview_table
from tidal.results import DB_NAME, ResultStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["relative", "accuracy", "ablation", "classes", "timing", "paired"]


def test_writes_report_files_and_every_figure(run_dir):
    for name in ("report.md", "report.html", "results.csv", "results.json"):
        assert (run_dir / name).stat().st_size > 0, name
    for kind in FIGURES:
        png = run_dir / "figures" / f"fashion-mnist-ir10-{kind}.png"
        assert png.stat().st_size > 10_000, png
        assert png.read_bytes()[:8] == PNG_MAGIC
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_markdown_embeds_the_figures_by_relative_path(run_dir):
    md = (run_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/fashion-mnist-ir10-{kind}.png" for kind in FIGURES)
    assert all((run_dir / link).is_file() for link in links)
    for heading in ("## fashion-mnist, imbalance ratio 10", "### Class make-up of the selections", "### Wall time",
                    "## Configuration"):
        assert heading in md
    assert "Best method by area under the accuracy curve: **tidal-entropy**." in md
    assert re.search(r"^\| \*\*tidal-entropy\*\* \| \*\*3\*\* \|", md, re.M)


def test_html_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    assert base64.b64decode(images[0])[:8] == PNG_MAGIC
    assert "figures/" not in page and "<style>" in page
    best = re.findall(r'<tr class="best">(.*?)</tr>', page)
    assert len(best) == 1 and "<strong>tidal-entropy</strong>" in best[0]
    assert "<code>results.sqlite</code>" in page  # inline markdown translated


def test_returns_the_summary_markdown(synth, tmp_path):
    run = synth.build_run(tmp_path / "run")
    summary = write_report(run)
    with ResultStore(run / DB_NAME) as store:
        (s,) = summarize(store.records())
    assert summary.startswith(format_markdown([s]))  # then the paired wins / ties / losses table
    assert "#### fashion-mnist, imbalance ratio 10: paired" in summary and "| tidal-entropy | W +" in summary
    overview = overview_table(s).to_markdown()
    assert "| **tidal-entropy** |" in overview and overview in summary and overview in (run / "report.md").read_text()


def test_without_matplotlib_writes_text_and_says_how_to_get_figures(synth, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    run = synth.build_run(tmp_path / "run")
    write_report(run)
    md = (run / "report.md").read_text()
    assert "pip install -e '.[report]'" in md and "![" not in md  # the package is installed from its checkout
    assert not (run / "figures").exists()
    assert "data:image/png" not in (run / "report.html").read_text()
    assert (run / "results.csv").stat().st_size > 0


def test_missing_database_names_the_directory(tmp_path):
    with pytest.raises(RunDirectoryError, match=re.escape(str(tmp_path / "nowhere"))):
        write_report(tmp_path / "nowhere")


def test_empty_database_is_refused(tmp_path):
    ResultStore(tmp_path / DB_NAME).close()
    with pytest.raises(RunDirectoryError, match="no finished cycle"):
        write_report(tmp_path)


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, tidal, tidal.report.figures; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sparse_settings_still_report_without_warnings(synth, tmp_path):
    """A setting without random and with one seed, and one with a single cycle stored so far."""
    extra = [synth.make_record("tidal-entropy", 0, c, imbalance=1.0) for c in range(4)]
    extra += [synth.make_record(m, 0, 0, imbalance=100.0) for m in ("random", "entropy")]
    run = synth.build_run(tmp_path / "run", extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(run)
    figures = sorted(p.name for p in (run / "figures").iterdir())
    assert "fashion-mnist-ir1-relative.png" not in figures and "fashion-mnist-ir1-ablation.png" not in figures
    assert {"fashion-mnist-ir1-accuracy.png", "fashion-mnist-ir100-relative.png",
            "fashion-mnist-ir100-classes.png", "fashion-mnist-ir100-timing.png"} <= set(figures)
    md = (run / "report.md").read_text()
    assert "No `random` runs in this setting" in md
    assert md.count("Best method by area under the accuracy curve") == 2  # IR 100 has no finished run yet
    assert "In progress: 1 of 4 cycles stored so far" in md


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(synth, tmp_path, umask, mode):
    """Atomic writes go through a mkstemp file (mode 0600): the result must get 0o666 & ~umask."""
    run = synth.build_run(tmp_path / "run")
    old = os.umask(umask)
    try:
        write_report(run)
    finally:
        os.umask(old)
    written = [run / n for n in ("report.md", "report.html", "results.csv", "results.json", "paired.csv")]
    written += sorted((run / "figures").glob("*.png"))
    assert len(written) == 5 + len(FIGURES)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: mode for p in written}


def test_the_report_names_classes_from_the_store_and_falls_back_to_indices(synth, tmp_path):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    run = synth.build_run(tmp_path / "named")
    with ResultStore(run / DB_NAME) as store:
        store.set_class_names({"fashion-mnist": names})
    write_report(run)
    md = (run / "report.md").read_text()
    assert md.count("Sandal, Shirt, Sneaker, Bag, Ankle boot: 5 of 10 classes") == 3  # table; figure alt text, caption
    old = synth.build_run(tmp_path / "old")  # no class names stored
    write_report(old)
    assert "class 5, class 6, class 7, class 8, class 9: 5 of 10 classes" in (old / "report.md").read_text()


def test_results_json_is_strict_json_even_when_the_store_holds_nan(synth, tmp_path, monkeypatch):
    """A database from before non-finite cycles were refused may hold NaN scores or losses:
    results.json writes them as null, never as the bare NaN token JSON does not have (issue 21, case 6)."""
    import dataclasses
    import json

    import tidal.report.writer as writer

    monkeypatch.setattr(writer, "figures_available", lambda: False)
    bad = dataclasses.replace(synth.make_record("entropy", 9, 0), scores=[float("nan")] * 50, final_loss=float("inf"))
    run = synth.build_run(tmp_path / "run", extra=[bad])
    write_report(run)
    text = (run / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"results.json holds {name}"))
    row = next(c for c in data["cycles"] if c["seed"] == 9)
    assert row["scores"] == [None] * 50 and row["final_loss"] is None


def test_a_cycle_near_chance_is_named_in_the_report(synth, tmp_path):
    """Issue 21 case 22: a cycle whose final loss is ln 10 and whose accuracy is 10% is flagged at the top
    of its setting; the synthetic run's other cycles (loss 0.1, accuracy >= 50%) are not."""
    import dataclasses

    bad = dataclasses.replace(synth.make_record("random", 3, 1), accuracy=0.1, final_loss=2.302)
    write_report(synth.build_run(tmp_path / "run", extra=[bad]))
    text = (tmp_path / "run" / "report.md").read_text()
    assert ("**Warning:** 1 cycle(s) ended near chance, their model learned (almost) nothing, so the training "
            "settings may not fit this data (README, \"Presets\"): random seed 3 cycle 2: final training loss 2.30 "
            "near ln 10 = 2.30 and accuracy 10.0% near chance = 10.0%.") in text
    clean = tmp_path / "clean"
    write_report(synth.build_run(clean))
    assert "near chance" not in (clean / "report.md").read_text()
