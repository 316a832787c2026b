"""A small folder of learnable PNGs (each class lights up one colour channel), written per test."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

CLASSES = ["red", "green", "blue"]


def write_images(root: Path, n: int, seed: int = 0, by_class: bool = False, size: int = 16,
                 names: str = "img {i:03d}.png") -> dict[str, str]:
    """``n`` PNGs under ``root`` (flat, or in class folders); returns {relative path: class}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        c = i % len(CLASSES)
        x = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        x[..., c] += 150
        rel = (f"{CLASSES[c]}/" if by_class else "") + names.format(i=i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(root / rel)
        truth[rel] = CLASSES[c]
    return truth


def answer(to_label: Path, truth: dict[str, str], out: Path) -> Path:
    """A person's answers: ``to_label.csv`` with its label column filled in from ``truth``."""
    with open(to_label, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            r["label"] = truth[r["path"]]
            w.writerow(r)
    return out


@pytest.fixture
def pool(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A flat folder of 45 PNGs (names with spaces) and the truth behind them."""
    root = tmp_path / "pool"
    return root, write_images(root, 45)


# tiny training: the tests check the workflow, not the accuracy
FAST = dict(train={"epochs": 2, "width": 4, "batch_size": 16}, strategy={})


@pytest.fixture(name="write_images")
def _write_images_fixture():
    return write_images


@pytest.fixture(name="answer")
def _answer_fixture():
    return answer


@pytest.fixture
def classes() -> list[str]:
    return list(CLASSES)


@pytest.fixture
def fast() -> dict:
    return {"train": dict(FAST["train"]), "strategy": {}}
