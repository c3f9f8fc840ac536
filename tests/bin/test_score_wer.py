"""score_wer and collect_results: counts, files, and the RESULTS table."""

import json
import subprocess
import sys

from espnet_llm_plugin.bin import collect_results


def test_score_and_collect(tmp_path):
    (tmp_path / "ref").write_text("u1 a b c\nu2 d e\nn1\n")
    (tmp_path / "hyp").write_text("u1 a x c\nu2 d e f\nn1 uh\n")
    (tmp_path / "timing.json").write_text(json.dumps({"elapsed_s": 2.0, "audio_s": 8.0}))
    out = tmp_path / "exp" / "asr_m" / "decode_d" / "test" / "score"
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.score_wer", "--ref", str(tmp_path / "ref"),
         "--hyp", str(tmp_path / "hyp"), "--out_dir", str(out), "--timing", str(tmp_path / "timing.json")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "result.json").read_text())
    assert res["wer"]["substitutions"] == 1 and res["wer"]["insertions"] == 2
    assert res["wer"]["ref_tokens"] == 5 and abs(res["wer"]["error_rate"] - 60.0) < 1e-9
    assert res["rtf"] == 0.25
    assert "WER 60.00% [ 3 / 5, 2 ins, 0 del, 1 sub ]" in proc.stdout
    table = collect_results.results_table(tmp_path / "exp")
    assert "| asr_m | decode_d | test | 3 | 5 | 60.0 | 1 | 0 | 2 |" in table and "0.250" in table


def test_unknown_hypothesis_id_is_an_error(tmp_path):
    (tmp_path / "ref").write_text("u1 a\n")
    (tmp_path / "hyp").write_text("u1 a\nzz b\n")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.score_wer", "--ref", str(tmp_path / "ref"),
         "--hyp", str(tmp_path / "hyp"), "--out_dir", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "'zz'" in proc.stderr
    assert not (tmp_path / "o" / "result.json").exists()


def test_collect_adds_perplexity_and_stage_tables(tmp_path):
    exp = tmp_path / "exp"
    ppl = exp / "mmlm_fbank100" / "perplexity"
    ppl.mkdir(parents=True)
    (ppl / "text_lm_test.json").write_text(json.dumps(
        {"sentences": 3, "tokens": 30, "ppl": 7.25, "word_ppl": 9.5, "loss": 1.98, "words": 20}))
    (exp / "mmlm_fbank100" / "RESULTS.md").write_text("| model | R@1 |\n|---|---|\n| m | 42.0 |\n")
    collect_results.main([str(exp), "--title", "t"])
    text = (exp / "RESULTS.md").read_text()
    assert "| mmlm_fbank100 | text_lm_test | 3 | 30 | 7.250 | 9.500 |" in text
    assert "### mmlm_fbank100" in text and "| m | 42.0 |" in text
    assert "no scored decodings yet" in text
