"""ESPnet-format WER/CER tables from score_wer's result.json entries."""

from espnet_llm_plugin.scoring.error_rate import score_corpus
from espnet_llm_plugin.scoring.results_table import espnet_row, espnet_tables


def _result(refs, hyps):
    return {"wer": score_corpus(refs, hyps, "word").as_dict(), "cer": score_corpus(refs, hyps, "char").as_dict()}


def test_row_matches_espnet_percentages():
    res = _result({"u1": "a b c d", "u2": "e f", "u3": "g h"}, {"u1": "a x c d", "u2": "e f z", "u3": "g h"})
    # 8 words: 6 correct, 1 sub, 0 del, 1 ins; 2 of 3 sentences wrong
    assert espnet_row("decode_x/test", res["wer"]) == "|decode_x/test|3|8|87.5|12.5|0.0|12.5|25.0|66.7|"


def test_tables_have_wer_and_cer_sections_in_espnet_layout():
    res = _result({"u1": "ab cd"}, {"u1": "ab ce"})
    md = espnet_tables([("decode_a/test", res), ("decode_a/test_target", res)])
    lines = md.splitlines()
    assert lines[0] == "### WER" and "### CER" in lines
    assert lines[2] == "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"
    cer = lines[lines.index("### CER") + 4]
    assert cer == "|decode_a/test|1|4|75.0|25.0|0.0|0.0|25.0|100.0|"
    assert espnet_tables([]) == ""


def test_empty_reference_set_reports_insertions_as_inf():
    res = _result({"n1": ""}, {"n1": "noise"})
    assert espnet_row("noise", res["wer"]).split("|")[3:] == ["0", "0.0", "0.0", "0.0", "inf", "inf", "100.0", ""]
