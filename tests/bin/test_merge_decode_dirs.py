"""merge_decode_dirs and score kinds: the jobs' score_info.json is carried into the merged dir
(so a per-token list stays per-token), jobs that disagree on it are refused by name, and ranks
only some jobs reach are kept."""

import subprocess
import sys

import pytest

from espnet_llm_plugin.bin.merge_decode_dirs import merge_decode_dirs
from espnet_llm_plugin.rescoring.nbest import Hypothesis, read_espnet_nbest, read_score_info, write_espnet_nbest

INFO = {"source_model": "whisper-tiny.en", "beam_size": 2}


def _per_token_jobs(work):
    for j in (1, 2):
        hyps = [Hypothesis("A", -0.5, num_tokens=2, score_kind="per_token")]
        write_espnet_nbest({f"u{j}": hyps}, work / f"output.{j}", info=INFO)


def test_merging_carries_score_info(tmp_path):
    _per_token_jobs(tmp_path / "work")
    merge_decode_dirs(tmp_path / "work", tmp_path / "out", 2)
    assert read_score_info(tmp_path / "out") == {"score_kind": "per_token", **INFO}
    merged = read_espnet_nbest(tmp_path / "out")
    assert [h.score for h in merged["u2"]] == [-1.0] and merged["u1"][0].num_tokens == 2


@pytest.mark.parametrize("change", ["missing", "other_source"])
def test_jobs_with_different_manifests_are_refused(tmp_path, change):
    work = tmp_path / "work"
    _per_token_jobs(work)
    if change == "missing":
        (work / "output.2" / "score_info.json").unlink()
    else:
        write_espnet_nbest(
            {"u2": [Hypothesis("A", -0.5, num_tokens=2, score_kind="per_token")]},
            work / "output.2",
            info={**INFO, "beam_size": 8},
        )
    with pytest.raises(ValueError, match=r"score_info.json differ \(output.1: .*, output.2: "):
        merge_decode_dirs(work, tmp_path / "out", 2)
    assert not (tmp_path / "out").exists()
    cmd = [sys.executable, "-m", "espnet_llm_plugin.bin.merge_decode_dirs", work, tmp_path / "out", "--nj", "2"]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "merge_decode_dirs: error:" in proc.stderr and "score_info.json differ" in proc.stderr


def test_ranks_that_only_some_jobs_have_are_kept(tmp_path):
    work = tmp_path / "work"
    write_espnet_nbest({"u1": [Hypothesis("A", -1.0)]}, work / "output.1")
    write_espnet_nbest({"u2": [Hypothesis("B", -1.0), Hypothesis("C", -2.0)]}, work / "output.2")
    merge_decode_dirs(work, tmp_path / "out", 2)
    merged = read_espnet_nbest(tmp_path / "out")
    assert [h.text for h in merged["u2"]] == ["B", "C"] and [h.text for h in merged["u1"]] == ["A"]
    assert not (tmp_path / "out" / "score_info.json").exists()  # ESPnet's lists: none, as the jobs
