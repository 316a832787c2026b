"""`tidal status`: the final training loss per round and a warning for a round that learned nothing."""

from __future__ import annotations

import math

from tidal.project.project import init_project
from tidal.project.status import chance_warnings, project_status
from tidal.project.store import DB_NAME, ProjectStore, RoundRecord


def add_round(project, rnd: int, accuracy: float | None, final_loss: float | None,
              confusion: list[list[int]] | None, classes: list[str], random: bool = False) -> None:
    """Store a trained round by hand (no training): what a query of ``project`` would store."""
    with ProjectStore(project / DB_NAME) as store:
        store.add_round(RoundRecord(rnd, "random" if random else "tidal-entropy", 0, 3, 10, "scratch", random, 9,
                                    [3, 3, 3], accuracy, 9, 1.0, 0.5, 2.0, classes, 1.0e9, [], final_loss,
                                    confusion))


def test_a_round_near_chance_is_named_with_its_loss(tmp_path, write_images, classes, fast):
    """Issue 21 case 22: a round whose model predicts one class for everything (final loss ln 3,
    holdout accuracy 1/3) is flagged in `tidal status`; a round that learned is not."""
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    add_round(tmp_path / "p", 1, 1.0, 0.05, [[3, 0, 0], [0, 3, 0], [0, 0, 3]], classes)
    add_round(tmp_path / "p", 2, 1 / 3, math.log(3), [[0, 0, 3], [0, 0, 3], [0, 0, 3]], classes)
    text = project_status(tmp_path / "p")
    header = next(line for line in text.splitlines() if line.split()[:1] == ["round"])
    assert "final loss" in header
    assert "0.050" in text and "1.099" in text
    warnings = [line.strip() for line in text.splitlines() if "warning:" in line]
    assert warnings == ["warning: round 2's model ended near chance (final training loss 1.10 near ln 3 = 1.10 and "
                        "accuracy 33.3% near chance = 33.3%): it learned (almost) nothing; the training settings may "
                        "not fit this data (README, \"Presets\")"]


def test_random_rounds_and_rounds_stored_without_a_loss_are_not_judged(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    add_round(tmp_path / "p", 1, None, None, None, classes, random=True)
    add_round(tmp_path / "p", 2, None, None, None, classes)  # a holdout-less round stored before losses were
    with ProjectStore(tmp_path / "p" / DB_NAME, readonly=True) as store:
        assert chance_warnings(store.rounds()) == []
    assert "warning" not in project_status(tmp_path / "p")
