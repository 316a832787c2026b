"""`tidal report PROJECT`: the per-class holdout view and the near-chance warning."""

from __future__ import annotations

import html
import math
import re

from tidal.project.project import init_project
from tidal.project.report import write_project_report
from tidal.project.store import DB_NAME, ProjectStore, RoundRecord


def _rows(page: str, after: str) -> list[list[str]]:
    """The cells of the first table after the heading containing ``after``."""
    table = page[page.index(after):]
    table = table[table.index("<table>"):table.index("</table>")]
    return [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)] for row in table.split("<tr>")[1:]]


def test_the_report_shows_a_model_that_answers_one_class_for_everything(tmp_path, write_images, classes, fast):
    """Issue 21 case 22: "everything is blue" is visible per class, and the round is flagged."""
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    with ProjectStore(tmp_path / "p" / DB_NAME) as store:
        store.add_round(RoundRecord(1, "tidal-entropy", 0, 3, 10, "scratch", False, 9, [3, 3, 3], 4 / 12, 12, 1.0,
                                    0.5, 2.0, classes, 1.0e9, [], math.log(3),
                                    [[0, 1, 3], [0, 0, 4], [0, 0, 4]]))
    page = write_project_report(tmp_path / "p").read_text(encoding="utf-8")
    rows = _rows(page, "holdout accuracy per class")
    assert rows[0][:4] == ["true class", "holdout images", "accuracy (%)", "most often predicted as"]
    assert rows[0][4:] == ["→ red", "→ green", "→ blue"]
    assert rows[1] == ["red", "4", "0.0", "blue (75%)", "0", "1", "3"]
    assert rows[2] == ["green", "4", "0.0", "blue (100%)", "0", "0", "4"]
    assert rows[3] == ["blue", "4", "100.0", "-", "0", "0", "4"]
    assert rows[4] == ["predicted (all)", "12", "33.3", "blue (92% of all)", "0", "1", "11"]
    assert 'class="warning"' in page and "round 1&#x27;s model ended near chance" in page


def test_a_report_without_a_stored_confusion_has_no_per_class_view(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    with ProjectStore(tmp_path / "p" / DB_NAME) as store:  # a round stored before confusions were
        store.add_round(RoundRecord(1, "tidal-entropy", 0, 3, 10, "scratch", False, 9, [3, 3, 3], None, 0, 1.0,
                                    0.5, 2.0, classes, 1.0e9, []))
    page = write_project_report(tmp_path / "p").read_text(encoding="utf-8")
    assert "accuracy per class" not in page and 'class="warning"' not in page
