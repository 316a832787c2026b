"""Scanning a pool folder: flat or nested, class folders as labels, bad files listed, no escape."""

from __future__ import annotations

import os

import pytest

from tidal.errors import DatasetError
from tidal.project.pool import relative_path, scan_pool



def test_a_flat_folder_is_all_unlabeled_with_paths_relative_to_the_root(tmp_path, write_images, classes):
    truth = write_images(tmp_path, 6)
    scan = scan_pool(tmp_path, classes)
    assert scan.images == sorted(truth) and scan.labels == {} and scan.skipped == []
    assert scan.sizes["img 000.png"] == (16, 16)


def test_images_under_a_class_folder_count_as_labelled_at_any_depth(tmp_path, write_images, classes):
    write_images(tmp_path / "batch 1", 6, by_class=True)
    write_images(tmp_path / "unsorted", 3)
    scan = scan_pool(tmp_path, classes)
    assert len(scan.images) == 9
    assert scan.labels["batch 1/red/img 000.png"] == "red" and scan.labels["batch 1/blue/img 005.png"] == "blue"
    assert not any(p.startswith("unsorted/") for p in scan.labels)


def test_unicode_and_spaces_are_accepted(tmp_path, write_images, classes):
    write_images(tmp_path / "été", 3, names="chat n° {i} 猫.png")
    scan = scan_pool(tmp_path, classes)
    assert "été/chat n° 0 猫.png" in scan.images


def test_unreadable_and_non_image_files_are_skipped_and_listed(tmp_path, write_images, classes):
    write_images(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / ".DS_Store").write_bytes(b"x")  # hidden: ignored, not listed
    scan = scan_pool(tmp_path, classes)
    assert len(scan.images) == 3
    why = dict(scan.skipped)
    assert set(why) == {"notes.txt", "broken.png"}
    assert "not an image" in why["notes.txt"] and "cannot be read as an image" in why["broken.png"]


def test_a_link_out_of_the_root_is_refused(tmp_path, write_images, classes):
    outside = tmp_path / "outside"
    write_images(outside, 1)
    root = tmp_path / "pool"
    write_images(root, 2)
    os.symlink(outside / "img 000.png", root / "sneaky.png")
    with pytest.raises(DatasetError, match="outside the pool folder"):
        scan_pool(root, classes)
    os.remove(root / "sneaky.png")
    os.symlink(outside, root / "linked dir")
    with pytest.raises(DatasetError, match="outside the pool folder"):
        scan_pool(root, classes)


def test_no_images_is_refused(tmp_path, write_images, classes):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="holds no readable image .*a.txt"):
        scan_pool(tmp_path, classes)
    with pytest.raises(DatasetError, match="does not exist"):
        scan_pool(tmp_path / "nope", classes)


@pytest.mark.parametrize("given,expected", [("a/b.png", "a/b.png"), ("./a//b.png", "a/b.png"),
                                            ("a\\b.png", "a/b.png"), ("a/../b.png", "b.png")])
def test_relative_path_normalises(tmp_path, given, expected):
    assert relative_path(tmp_path.resolve(), given) == expected


@pytest.mark.parametrize("given", ["../b.png", "a/../../b.png", "/etc/passwd", ".."])
def test_relative_path_refuses_escapes(tmp_path, given):
    with pytest.raises(ValueError, match="escapes the pool root|outside the pool root"):
        relative_path(tmp_path.resolve(), given)
