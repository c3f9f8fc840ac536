"""Unit-token vocabulary extension: text unchanged, round trip, clear errors."""

import json

import pytest
import torch
from mmlm_data import NUM_UNITS, SENTENCES
from tiny_models import tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer

from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.core.unit_tokens import speech_span, unit_token_list
from espnet_llm_plugin.mmlm.unit_vocab import (
    UNIT_VOCAB_FILE,
    UnitVocabError,
    check_unit_tokens,
    extend_model_dir,
    extend_with_units,
    read_unit_vocab,
)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def untied_lm(tokenizer):
    return tiny_llama(
        0,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    ).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_text_ids_and_text_logits_unchanged(tiny_lm_dir, tied):
    model, tok = load_causal_lm(tiny_lm_dir)
    if not tied:
        model = untied_lm(tok)
    base_len = len(tok)
    before_ids = [tok(s, add_special_tokens=False)["input_ids"] for s in SENTENCES]
    before = [logits(model, [tok.bos_token_id] + ids) for ids in before_ids[:5]]
    info = extend_with_units(model, tok, NUM_UNITS, seed=3)
    assert len(tok) == base_len + NUM_UNITS + 2
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert model.get_output_embeddings().weight.shape[0] == len(tok)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    assert [tok(s, add_special_tokens=False)["input_ids"] for s in SENTENCES] == before_ids
    for ids, ref in zip(before_ids, before):
        out = logits(model, [tok.bos_token_id] + ids)
        assert torch.equal(out[:, :base_len], ref)  # bit-identical over the text vocabulary
    # unit tokens: one id each, consecutive after the text vocabulary
    assert info.base_vocab_size == base_len
    assert (info.speech_start_id, info.speech_end_id, info.first_unit_id) == (base_len, base_len + 1, base_len + 2)
    ids = tok(speech_span([0, 5, 31]), add_special_tokens=False)["input_ids"]
    assert ids == [
        info.speech_start_id,
        info.first_unit_id,
        info.first_unit_id + 5,
        info.first_unit_id + 31,
        info.speech_end_id,
    ]
    check_unit_tokens(tok, info)


def test_new_rows_are_mean_plus_small_seeded_noise(tiny_lm_dir):
    rows = []
    for _ in range(2):
        model, tok = load_causal_lm(tiny_lm_dir)
        base = model.get_input_embeddings().weight[: len(tok)].detach().clone()
        info = extend_with_units(model, tok, 4, seed=7, noise_std=0.01)
        new = model.get_input_embeddings().weight[info.base_vocab_size :].detach()
        rows.append(new.clone())
    assert torch.equal(rows[0], rows[1])  # seeded
    assert torch.allclose(rows[0].mean(0), base.mean(0), atol=0.01 * float(base.std()))
    assert not torch.equal(rows[0][0], rows[0][1])  # distinct tokens get distinct rows


def test_spare_embedding_rows_are_reused(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    model.resize_token_embeddings(len(tok) + 50, mean_resizing=False)  # padded vocabulary
    extend_with_units(model, tok, 8)
    assert model.get_input_embeddings().weight.shape[0] == len(tok) - 10 + 50


def test_save_and_from_pretrained_round_trip(tiny_lm_dir, tmp_path):
    out = tmp_path / "ext"
    info = extend_model_dir(tiny_lm_dir, out, NUM_UNITS, seed=1)
    saved = json.loads((out / UNIT_VOCAB_FILE).read_text())
    assert saved["num_units"] == NUM_UNITS and saved["base_vocab_size"] == info.base_vocab_size
    assert saved["base_model"] == str(tiny_lm_dir.resolve())
    assert read_unit_vocab(out) == info
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    check_unit_tokens(tok, info, str(out))
    ref_model, ref_tok = load_causal_lm(tiny_lm_dir)
    ref_info = extend_with_units(ref_model, ref_tok, NUM_UNITS, seed=1, base_model=str(tiny_lm_dir.resolve()))
    text = speech_span([1, 2, 3]) + " " + SENTENCES[0]
    ids = tok(text)["input_ids"]
    assert ids == ref_tok(text)["input_ids"]
    assert torch.allclose(logits(model, ids), logits(ref_model, ids), atol=1e-6)
    assert ref_info == info


def test_errors(tiny_lm_dir, tmp_path):
    model, tok = load_causal_lm(tiny_lm_dir)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UnitVocabError, match="num_units"):
            extend_with_units(model, tok, bad)
    info = extend_with_units(model, tok, 4)
    with pytest.raises(UnitVocabError, match="already has"):
        extend_with_units(model, tok, 8)  # an extended tokenizer: conflicting tokens
    with pytest.raises(UnitVocabError, match="out of range"):
        info.unit_ids([4])
    with pytest.raises(UnitVocabError, match="out of range"):
        info.unit_ids([-1])
    with pytest.raises(UnitVocabError, match="no unit_vocab.json"):
        read_unit_vocab(tiny_lm_dir)
    other = AutoTokenizer.from_pretrained(tiny_lm_dir)
    other.add_tokens(unit_token_list(4)[::-1], special_tokens=True)  # same tokens, other ids
    with pytest.raises(UnitVocabError, match="do not match"):
        check_unit_tokens(other, info, "x")
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError):
        extend_model_dir(tmp_path / "missing", tmp_path / "never", 4)
    assert not (tmp_path / "never").exists()
