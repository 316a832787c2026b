"""The README's "Label your own data" walk, as a test: init -> query -> label -> query -> status -> report,
through the command line, on a small folder of PNGs written here; the report checked in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tidal.cli import main

pytestmark = pytest.mark.timeout(900)  # real servers and process groups start slowly on a busy machine

CHROMIUM = "/usr/bin/chromium"
# Written into a copy of the page: after the load event, how many <img> decoded to a real image.
_PROBE = ("<script>window.addEventListener('load', function () { var n = 0, imgs = document.images;"
          "for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) n++; }"
          "var d = document.createElement('div'); d.id = 'probe'; d.textContent = 'decoded ' + n + ' of ' + imgs.length;"
          "document.body.appendChild(d); });</script>")


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _chromium() -> str | None:
    for name in (CHROMIUM, "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def images_shown_by_a_browser(page, tmp_path) -> tuple[int, int]:
    """(decoded <img>, all <img>) of ``page`` in headless Chromium; skips when Chromium is missing."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not found (`apt-get install chromium`; `make test` installs it as root)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r"decoded (\d+) of (\d+)", proc.stdout)
    assert m, f"chromium printed no probe result (exit {proc.returncode}): {proc.stderr[-500:]}"
    return int(m.group(1)), int(m.group(2))


def test_the_readme_walk(tmp_path, capsys, write_images, answer, classes):
    pool, holdout, project = tmp_path / "my images", tmp_path / "holdout", tmp_path / "project"
    truth = write_images(pool, 60)
    write_images(holdout, 18, seed=1, by_class=True)
    (pool / "notes.txt").write_text("not an image")

    code, out, err = _cli(capsys, "init", project, "--data", f"folder:{pool}", "--classes", *classes,
                          "--holdout", holdout, "--epochs", 2, "--width", 4, "--batch-size", 16)
    assert code == 0 and "60 samples, 0 labelled, holdout 18" in out
    assert f"warning: 1 files in the pool are not readable images and were skipped; the list is in " \
           f"{project / 'skipped.txt'}" in err
    assert (project / "skipped.txt").read_text().startswith("notes.txt\tnot an image")

    code, out, _ = _cli(capsys, "query", project, "-k", 10, "--quiet")
    assert code == 0 and "round 1: fewer than 2 labels" in out and "at random" in out
    code, out, _ = _cli(capsys, "label", project, answer(project / "rounds/001/to_label.csv", truth,
                                                         tmp_path / "answers 1.csv"))
    assert code == 0 and "10 new labels" in out

    code, out, _ = _cli(capsys, "query", project, "-k", 8, "--quiet")
    assert code == 0 and re.search(r"round 2: trained on 10 labels, holdout accuracy \d+\.\d%", out)
    tasks = (project / "rounds/002/tasks.json").read_text(encoding="utf-8")
    assert '"model_version": "tidal round 2"' in tasks and "/data/local-files/?d=my%20images/img%20" in tasks

    code, out, err = _cli(capsys, "query", project, "-k", 2, "--quiet", "--subset", 20)  # round 2 not labelled yet
    assert code == 0 and "note: 8 of round 2's 8 samples are not labelled yet" in err and "round 3" in out

    code, out, _ = _cli(capsys, "status", project)
    assert code == 0
    assert re.search(r"^  all +10 +100\.0$", out, re.M) and "unlabeled: 50 of 60" in out
    assert re.search(r"^  1 +random +0 +10 +- ", out, re.M)
    assert re.search(r"^  2 +tidal-entropy +10 +8 +\d+\.\d ", out, re.M)
    assert re.search(r"^  3 +tidal-entropy +10 +2 +\d+\.\d ", out, re.M)

    code, out, _ = _cli(capsys, "report", project)
    page = project / "report.html"
    assert code == 0 and page.is_file()
    text = page.read_text(encoding="utf-8")
    assert "Round 3: the 2 samples selected by tidal-entropy" in text and text.count('class="grid"') == 1
    assert text.count("<figure><img") == 2  # a thumbnail per selected image of the last round
    decoded, total = images_shown_by_a_browser(page, tmp_path)
    assert total == 2 + 2 and decoded == total  # the thumbnails and the two charts


def test_the_report_without_matplotlib_keeps_tables_and_thumbnails(tmp_path, capsys, write_images, classes,
                                                                   monkeypatch):
    import tidal.report.style

    monkeypatch.setattr(tidal.report.style, "figures_available", lambda: False)
    write_images(tmp_path / "pool", 12)
    _cli(capsys, "init", tmp_path / "p", "--data", f"folder:{tmp_path / 'pool'}", "--classes", *classes)
    _cli(capsys, "query", tmp_path / "p", "-k", 4, "--quiet")
    code, _, _ = _cli(capsys, "report", tmp_path / "p")
    text = (tmp_path / "p" / "report.html").read_text(encoding="utf-8")
    assert code == 0 and "No charts: matplotlib is not installed" in text
    assert "drawn at random (no model yet)" in text and text.count("<figure><img") == 4
    assert images_shown_by_a_browser(tmp_path / "p" / "report.html", tmp_path) == (4, 4)


@pytest.mark.parametrize("args", [["init", "--help"], ["query", "--help"], ["label", "--help"], ["status", "--help"],
                                  ["query", "p"]])
def test_help_and_argument_errors_do_not_import_torch(args):
    code = ("import sys\nfrom tidal.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_mistakes_are_one_line_errors(tmp_path, capsys, write_images, classes):
    write_images(tmp_path / "pool", 6)
    code, _, err = _cli(capsys, "init", tmp_path / "p", "--data", f"folder:{tmp_path / 'pool'}", "--classes", "cat")
    assert code == 2 and err.count("\n") == 1 and "needs at least 2" in err
    code, _, err = _cli(capsys, "init", tmp_path / "p", "--data", f"folder:{tmp_path / 'pool'}", "--classes",
                        *classes, "--method", "tidal-entropie")
    assert code == 2 and err.count("\n") == 1 and "tidal-entropy" in err
    assert not (tmp_path / "p" / "project.sqlite").exists()  # nothing created by a refused init
    _cli(capsys, "init", tmp_path / "p", "--data", f"folder:{tmp_path / 'pool'}", "--classes", *classes)
    code, _, err = _cli(capsys, "query", tmp_path / "p", "-k", 7)
    assert code == 2 and err.count("\n") == 1 and "-k 7 is larger than what is unlabeled (6 of 6 samples)" in err
    (tmp_path / "empty.csv").write_text("")
    code, _, err = _cli(capsys, "label", tmp_path / "p", tmp_path / "empty.csv")
    assert code == 2 and err.count("\n") == 1 and "is empty" in err
    code, _, err = _cli(capsys, "status", tmp_path / "pool")
    assert code == 2 and "is not a tidal project" in err
