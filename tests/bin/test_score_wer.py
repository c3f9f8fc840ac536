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
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.score_wer",
            "--ref",
            str(tmp_path / "ref"),
            "--hyp",
            str(tmp_path / "hyp"),
            "--out_dir",
            str(out),
            "--timing",
            str(tmp_path / "timing.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "result.json").read_text())
    assert res["wer"]["substitutions"] == 1 and res["wer"]["insertions"] == 2
    assert res["wer"]["ref_tokens"] == 5 and abs(res["wer"]["error_rate"] - 60.0) < 1e-9
    assert res["rtf"] == 0.25
    assert "WER 60.00% [ 3 / 5, 2 ins, 0 del, 1 sub ]" in proc.stdout
    table = collect_results.results_table(tmp_path / "exp")
    assert "| asr_m | decode_d | test | 3 | 5 | 60.0 | 1 | 0 | 2 |" in table and "0.250" in table
    # result.txt: the summary, then each utterance aligned in sclite's layout
    txt = (out / "result.txt").read_text()
    assert txt.startswith("WER 60.00%")
    block = txt[txt.index("id: (u1)") :].splitlines()
    assert block[1] == "Scores: (#C #S #D #I) 2 1 0 0"
    assert block[2].split() == ["REF:", "a", "B", "c"] and block[3].split() == ["HYP:", "a", "X", "c"]
    assert "id: (n1)" in txt and "id: (u2)" in txt
    collect_results.main([str(tmp_path / "exp")])
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    assert "|asr_m/decode_d/test|3|5|80.0|20.0|0.0|40.0|60.0|100.0|" in results


def test_normaliser_applies_to_both_sides(tmp_path):
    (tmp_path / "ref").write_text("u1 The cat, sat.\n")
    (tmp_path / "hyp").write_text("u1 THE CAT SAT\n")

    def wer(*opts):
        out = tmp_path / "o" / "_".join(opts or ("plain",))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "espnet_llm_plugin.bin.score_wer",
                "--ref",
                str(tmp_path / "ref"),
                "--hyp",
                str(tmp_path / "hyp"),
                "--out_dir",
                str(out),
                *opts,
            ],
            check=True,
            capture_output=True,
        )
        return json.loads((out / "result.json").read_text())["wer"]["errors"]

    assert wer() == 3
    assert wer("--case", "lower") == 2  # "cat," and "sat." still differ
    assert wer("--case", "upper", "--punctuation", "strip") == 0


def test_english_normaliser_scores_whisper_text_against_recipe_form(tmp_path, capsys):
    """Whisper writes digits and hyphens; recipe references spell numbers out and split
    compounds. Case and punctuation options alone leave those as errors; --normaliser english
    does not, and RESULTS.md says the row was normalised."""
    from espnet_llm_plugin.bin import score_wer

    (tmp_path / "ref").write_text("u1 LAUNCHED IN TWENTY THIRTY SEVEN\nu2 A FAST SPINNING DWARF PLANET\n")
    (tmp_path / "hyp").write_text("u1 Launched in 2037.\nu2 A fast-spinning dwarf planet.\n")

    def score(name, *opts):
        out = tmp_path / "exp" / "asr_m" / name / "test" / "score"
        score_wer.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out_dir", str(out), *opts])
        return json.loads((out / "result.json").read_text())

    cased = score("decode_cased", "--case", "upper", "--punctuation", "strip")
    assert cased["wer"]["errors"] == 5 and not cased["normaliser"]["english"]  # 3 words vs 1, 2 vs 1
    normalised = score("decode_norm", "--normaliser", "english")
    assert normalised["wer"]["errors"] == 0 and normalised["normaliser"]["english"]
    assert normalised["wer"]["ref_tokens"] == 8  # counted after normalisation, as Whisper's WER is
    table = collect_results.results_table(tmp_path / "exp")
    assert "| asr_m | decode_norm (english-normalised) | test |" in table
    assert "| asr_m | decode_cased | test |" in table
    # llm_asr.sh --score_normalised true: score_english/ next to score/, both collected
    english = tmp_path / "exp" / "asr_m" / "decode_cased" / "test" / "score_english"
    english_opts = ["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out_dir", str(english)]
    score_wer.main([*english_opts, "--normaliser", "english"])
    table = collect_results.results_table(tmp_path / "exp")
    assert "| asr_m | decode_cased (english-normalised) | test | 2 | 8 | 0.0 |" in table
    assert "| asr_m | decode_cased | test | 2 | 10 | 50.0 |" in table
    assert "|asr_m/decode_cased/test (english-normalised)|2|8|" in collect_results.espnet_format_tables(
        tmp_path / "exp"
    )


def test_unknown_hypothesis_id_is_an_error(tmp_path):
    (tmp_path / "ref").write_text("u1 a\n")
    (tmp_path / "hyp").write_text("u1 a\nzz b\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.score_wer",
            "--ref",
            str(tmp_path / "ref"),
            "--hyp",
            str(tmp_path / "hyp"),
            "--out_dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "'zz'" in proc.stderr
    assert not (tmp_path / "o" / "result.json").exists()


def test_collect_adds_perplexity_and_stage_tables(tmp_path):
    exp = tmp_path / "exp"
    ppl = exp / "mmlm_fbank100" / "perplexity"
    ppl.mkdir(parents=True)
    (ppl / "text_lm_test.json").write_text(
        json.dumps({"sentences": 3, "tokens": 30, "ppl": 7.25, "word_ppl": 9.5, "loss": 1.98, "words": 20})
    )
    (exp / "mmlm_fbank100" / "RESULTS.md").write_text("| model | R@1 |\n|---|---|\n| m | 42.0 |\n")
    collect_results.main([str(exp), "--title", "t"])
    text = (exp / "RESULTS.md").read_text()
    assert "| mmlm_fbank100 | text_lm_test | 3 | 30 | 7.250 | 9.500 |" in text
    assert "### mmlm_fbank100" in text and "| m | 42.0 |" in text
    assert "no scored decodings yet" in text
