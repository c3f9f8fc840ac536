"""split_scp and merge_decode_dirs: the --nj split/merge around decoding jobs."""

import json

import pytest

from espnet_llm_plugin.bin.merge_decode_dirs import merge_decode_dirs
from espnet_llm_plugin.bin.split_scp import split_scp
from espnet_llm_plugin.fileio.kaldi_data import read_scp


def test_split_covers_all_keys_once(tmp_path):
    (tmp_path / "wav.scp").write_text("".join(f"u{i:02d} x\n" for i in range(10)))
    assert split_scp(tmp_path / "wav.scp", tmp_path / "s", 3) == 3
    keys = [k for j in (1, 2, 3) for k in read_scp(tmp_path / "s" / f"keys.{j}.scp")]
    assert keys == [f"u{i:02d}" for i in range(10)]
    assert split_scp(tmp_path / "wav.scp", tmp_path / "s", 50) == 10
    assert not (tmp_path / "s" / "keys.11.scp").exists()


def _job(work, j, utts):
    for nb in (1, 2):
        d = work / f"output.{j}" / f"{nb}best_recog"
        d.mkdir(parents=True)
        (d / "text").write_text("".join(f"{u} hyp{nb} {u}\n" for u in utts))
        (d / "score").write_text("".join(f"{u} tensor(-1.0)\n" for u in utts))
    (work / f"output.{j}" / "timing.json").write_text(json.dumps({"elapsed_s": 1.5, "audio_s": 3.0}))


def test_merge(tmp_path):
    work = tmp_path / "work"
    _job(work, 1, ["b", "a"])
    _job(work, 2, ["c"])
    merge_decode_dirs(work, tmp_path / "out", 2)
    assert list(read_scp(tmp_path / "out" / "text")) == ["a", "b", "c"]
    assert read_scp(tmp_path / "out" / "2best_recog" / "text")["c"] == "hyp2 c"
    assert json.loads((tmp_path / "out" / "timing.json").read_text()) == {"elapsed_s": 3.0, "audio_s": 6.0}


def test_merge_refuses_a_missing_job(tmp_path):
    work = tmp_path / "work"
    _job(work, 1, ["a"])
    with pytest.raises(FileNotFoundError, match="output.2"):
        merge_decode_dirs(work, tmp_path / "out", 2)
    assert not (tmp_path / "out").exists()
