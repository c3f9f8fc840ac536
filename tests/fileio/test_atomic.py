"""Atomic outputs leave nothing half-written behind."""

import pytest

from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_file, atomic_write_text


def test_atomic_file_replaces_only_on_success(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write_text(p, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_file(p) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_swaps_in_complete_dir_and_cleans_up_on_failure(tmp_path):
    d = tmp_path / "dump"
    with atomic_dir(d) as tmp:
        (tmp / "a").write_text("1")
    assert (d / "a").read_text() == "1"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(d) as tmp:
            (tmp / "b").write_text("2")
            raise KeyboardInterrupt
    assert sorted(x.name for x in d.iterdir()) == ["a"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dump"]
    with atomic_dir(d) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(x.name for x in d.iterdir()) == ["c"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dump"]


def test_outputs_get_umask_modes_not_owner_only(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
