"""Text perplexity of an HF causal LM."""

import math

import pytest
import torch
from mmlm_data import SENTENCES

from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.mmlm.perplexity import text_perplexity
from espnet_llm_plugin.mmlm.unit_vocab import extend_with_units


def test_matches_a_direct_computation(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    texts = SENTENCES[:4] + ["  "]
    result = text_perplexity(model, tok, texts, batch_size=3)
    nll, count = 0.0, 0
    for t in SENTENCES[:4]:
        ids = torch.tensor([[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    assert result["tokens"] == count and result["sentences"] == 4
    assert result["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    words = sum(len(t.split()) + 1 for t in SENTENCES[:4])
    assert result["word_ppl"] == pytest.approx(math.exp(nll / words), rel=1e-4)
    with pytest.raises(ValueError, match="no non-empty"):
        text_perplexity(model, tok, ["", " "])


def test_untrained_unit_tokens_only_add_softmax_mass(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    base = text_perplexity(model, tok, SENTENCES)
    extend_with_units(model, tok, 16)
    ext = text_perplexity(model, tok, SENTENCES)
    assert ext["tokens"] == base["tokens"]
    assert ext["ppl"] > base["ppl"]  # same text logits, a larger normaliser
