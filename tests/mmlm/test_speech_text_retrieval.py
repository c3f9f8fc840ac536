"""Speech<->text retrieval evaluation and its markdown table."""

import pytest
from mmlm_data import NUM_UNITS, SENTENCES, synthetic_units

from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.mmlm.contrastive import PoolingConfig
from espnet_llm_plugin.mmlm.mixed_sequences import PairedUtterance
from espnet_llm_plugin.mmlm.speech_text_retrieval import (
    MD_HEADER,
    evaluate_retrieval,
    markdown_row,
    update_markdown,
)
from espnet_llm_plugin.mmlm.unit_vocab import extend_with_units


def test_evaluate_groups_shared_transcripts(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    info = extend_with_units(model, tok, NUM_UNITS)
    texts = SENTENCES[:6] + SENTENCES[:2]  # two transcripts spoken twice
    pairs = [PairedUtterance(f"u{i}", tuple(synthetic_units(t, i)), t) for i, t in enumerate(texts)]
    r = evaluate_retrieval(model, tok, info, pairs, PoolingConfig(), batch_size=3)
    assert (r["utterances"], r["texts"]) == (8, 6)
    for side in ("speech_to_text", "text_to_speech"):
        assert 0 <= r[side]["R@1"] <= r[side]["R@5"] <= r[side]["R@10"] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_retrieval(model, tok, info, pairs[:1], PoolingConfig())


def test_markdown_table_is_created_then_appended():
    result = {
        "utterances": 3,
        "texts": 2,
        "speech_to_text": {"R@1": 0.5, "R@5": 1.0, "R@10": 1.0},
        "text_to_speech": {"R@1": 0.25, "R@5": 1.0, "R@10": 1.0},
    }
    row1 = markdown_row("a", "test", result, (1, 5, 10))
    assert row1 == "| a | test | 3 | 2 | 50.0 | 100.0 | 100.0 | 25.0 | 100.0 | 100.0 |"
    md = update_markdown("# RESULTS\n\n| other | table |\n|---|---|\n| x | y |\n", row1)
    md = update_markdown(md + "\n## later section\n", markdown_row("b", "test", result, (1, 5, 10)))
    lines = md.splitlines()
    i = lines.index(MD_HEADER)
    assert lines[i + 2].startswith("| a |") and lines[i + 3].startswith("| b |")
    assert lines[0] == "# RESULTS" and "| x | y |" in lines and "## later section" in lines
    assert md.count(MD_HEADER) == 1
