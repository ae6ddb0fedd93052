"""Allowed roots and URL names: only listed traces under the roots can be reached, whatever the URL says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from viewer.paths import ROOTS_ENV, list_traces, resolve_name, roots_from, safe_name


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    touch(root / "a.h5")
    touch(root / "sub" / "b.hdf5")
    touch(root / "notes.txt")
    touch(root / ".hidden.h5")
    touch(root / ".a.h5.partial")
    touch(root / ".git" / "c.h5")
    touch(tmp_path / "outside" / "secret.h5")
    return root


def test_listing_finds_traces_recursively_and_skips_hidden_and_other_files(tree: Path) -> None:
    entries = list_traces([tree])
    assert [e.name for e in entries] == ["a.h5", "sub/b.hdf5"]
    assert all(e.path.is_absolute() and e.path.is_relative_to(tree) for e in entries)


def test_a_file_root_is_listed_by_its_name(tree: Path) -> None:
    entries = list_traces([tree / "sub" / "b.hdf5"])
    assert [(e.name, e.path) for e in entries] == [("b.hdf5", tree / "sub" / "b.hdf5")]


def test_several_folder_roots_are_prefixed_by_their_folder_name(tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "more"
    touch(other / "a.h5")
    names = [e.name for e in list_traces([tree, other])]
    assert names == ["runs/a.h5", "runs/sub/b.hdf5", "more/a.h5"]


def test_symlink_pointing_out_of_the_root_is_not_listed(tree: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside" / "secret.h5", tree / "link.h5")
    assert "link.h5" not in [e.name for e in list_traces([tree])]


@pytest.mark.parametrize(
    "name",
    ["../outside/secret.h5", "sub/../../outside/secret.h5", "/etc/passwd", "", "./a.h5", "a.h5/", "sub//b.hdf5", "~/a.h5",
     "C:/a.h5", "sub\\b.hdf5", "a.h5\x00", "notes.txt", "missing.h5", ".hidden.h5"],
)
def test_url_names_that_are_not_listed_traces_resolve_to_nothing(tree: Path, name: str) -> None:
    assert resolve_name(name, list_traces([tree])) is None


def test_listed_names_resolve_to_their_file(tree: Path) -> None:
    entries = list_traces([tree])
    entry = resolve_name("sub/b.hdf5", entries)
    assert entry is not None and entry.path == tree / "sub" / "b.hdf5"


def test_a_file_swapped_for_a_link_after_listing_is_refused(tree: Path, tmp_path: Path) -> None:
    entries = list_traces([tree])
    (tree / "a.h5").unlink()
    os.symlink(tmp_path / "outside" / "secret.h5", tree / "a.h5")
    assert resolve_name("a.h5", entries) is None


def test_safe_name_accepts_plain_relative_paths_only() -> None:
    assert safe_name("a.h5") and safe_name("x/y/z.h5")
    assert not safe_name("x/../y.h5") and not safe_name("/x.h5") and not safe_name("..")


def test_roots_come_from_the_environment_first_then_argv(tmp_path: Path) -> None:
    env = {ROOTS_ENV: os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])}
    assert roots_from(["ignored"], env) == [tmp_path / "a", tmp_path / "b"]
    assert roots_from([str(tmp_path / "c")], {}) == [tmp_path / "c"]
