import pytest

from espnet_llm_plugin.fileio.kaldi_data import DataDirError
from espnet_llm_plugin.fileio.unit_file import dedup_units, read_units, write_units


def test_round_trip_sorted_and_empty(tmp_path):
    p = tmp_path / "units"
    write_units(p, [("b", [1, 2]), ("a", []), ("c", [0])])
    assert p.read_text() == "a\nb 1 2\nc 0\n"
    assert read_units(p) == {"a": [], "b": [1, 2], "c": [0]}


def test_bad_values_named(tmp_path):
    p = tmp_path / "units"
    p.write_text("u1 1 x\n")
    with pytest.raises(DataDirError, match="u1"):
        read_units(p)
    p.write_text("u2 1 9\n")
    with pytest.raises(DataDirError, match="u2.*9"):
        read_units(p, num_units=5)


def test_dedup():
    assert dedup_units([3, 3, 5, 5, 5, 3]) == [3, 5, 3]
    assert dedup_units([]) == []
