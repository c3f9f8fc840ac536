"""InfoNCE, pooling, temperature and contrastive training on a tiny unit-extended LM."""

import math

import pytest
import torch
from mmlm_data import NUM_UNITS, SENTENCES, synthetic_units

from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.core.unit_tokens import speech_span
from espnet_llm_plugin.mmlm.contrastive import (
    ContrastiveConfig,
    PoolingConfig,
    Temperature,
    info_nce,
    pad_batch,
    pooled_embeddings,
    read_translation_pairs,
    speech_token_ids,
    text_token_ids,
    train_contrastive,
)
from espnet_llm_plugin.mmlm.mixed_lm_training import prepare_model
from espnet_llm_plugin.mmlm.unit_vocab import extend_with_units


def test_info_nce_equals_hand_computed_cross_entropy_2x2():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: e1, e2
    b = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # normalised: (.6, .8), e2
    tau = 0.5
    # cosines: s[0] = [.6, 0], s[1] = [.8, 1]
    s = [[0.6, 0.0], [0.8, 1.0]]

    def ce(row, gold):
        return -(row[gold] / tau - math.log(sum(math.exp(x / tau) for x in row)))

    a_to_b = (ce(s[0], 0) + ce(s[1], 1)) / 2
    cols = [[s[0][0], s[1][0]], [s[0][1], s[1][1]]]
    b_to_a = (ce(cols[0], 0) + ce(cols[1], 1)) / 2
    assert float(info_nce(a, b, tau)) == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:1], tau)


def test_temperature_learnt_is_clamped_fixed_is_a_buffer():
    t = Temperature(0.07, learnable=True, min_value=0.05, max_value=0.5)
    assert float(t().detach()) == pytest.approx(0.07)
    with torch.no_grad():
        t.log_tau.fill_(math.log(0.001))
    assert float(t().detach()) == pytest.approx(0.05)
    fixed = Temperature(0.1, learnable=False)
    assert list(fixed.parameters()) == [] and float(fixed()) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveConfig(temperature=2.0).validate()


@pytest.fixture(scope="module")
def ext_lm(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    info = extend_with_units(model, tok, NUM_UNITS)
    return model, tok, info


def test_token_ids_match_the_shared_convention(ext_lm):
    _, tok, info = ext_lm
    units = [3, 0, 31]
    assert (
        speech_token_ids(tok, info, units)
        == tok(tok.bos_token + speech_span(units) + tok.eos_token, add_special_tokens=False)["input_ids"]
    )
    assert (
        text_token_ids(tok, ["anna walks home"])[0][1:-1]
        == tok("anna walks home", add_special_tokens=False)["input_ids"]
    )
    with pytest.raises(ValueError, match="out of range"):
        speech_token_ids(tok, info, [NUM_UNITS])


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_ignores_padding(ext_lm, pooling):
    model, tok, info = ext_lm
    seqs = text_token_ids(tok, ["anna walks home", "they sing"])
    cfg = PoolingConfig(layer=-1, pooling=pooling)
    with torch.no_grad():
        both = pooled_embeddings(model, *pad_batch(seqs, tok.pad_token_id), cfg)
        alone = pooled_embeddings(model, *pad_batch(seqs[1:], tok.pad_token_id), cfg)
        states = model(input_ids=torch.tensor(seqs[1:]), output_hidden_states=True).hidden_states
    assert both.shape == (2, 32)
    assert torch.allclose(both[1], alone[0], atol=1e-5)
    ref = states[-1][0, -1] if pooling == "last" else states[-1][0, 1:].mean(0)
    assert torch.allclose(alone[0], ref, atol=1e-5)
    with pytest.raises(ValueError, match="layer"):
        pooled_embeddings(model, *pad_batch(seqs, 0), PoolingConfig(layer=5))


def test_contrastive_loss_decreases_on_a_fixed_batch(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    info = extend_with_units(model, tok, NUM_UNITS)
    model, _, _ = prepare_model(model, "full", info)
    pairs = [(synthetic_units(t, i), t) for i, t in enumerate(SENTENCES[:8])]
    pooling = PoolingConfig(layer=-1, pooling="mean")

    def loss_now():
        model.eval()
        with torch.no_grad():
            speech = [speech_token_ids(tok, info, u) for u, _ in pairs]
            text = text_token_ids(tok, [t for _, t in pairs])
            s = pooled_embeddings(model, *pad_batch(speech, 0), pooling)
            t = pooled_embeddings(model, *pad_batch(text, 0), pooling)
        return float(info_nce(s, t, 0.1))

    before = loss_now()
    cfg = ContrastiveConfig(
        max_steps=15, batch_size=8, lr=3e-3, warmup_steps=1, temperature=0.1, learn_temperature=False, log_every=5
    )
    tau, log = train_contrastive(
        model,
        tok,
        info,
        pairs,
        pooling,
        cfg,
        translation_pairs=[("anna", "anne"), ("the cat", "le chat")],
        device=torch.device("cpu"),
    )
    after = loss_now()
    assert after < 0.5 * before
    assert [e["step"] for e in log["train"]] == [5, 10, 15]
    assert log["train"][-1]["loss"] < log["train"][0]["loss"]
    assert log["translation_pairs"] == 2 and float(tau().detach()) == pytest.approx(0.1)


def test_too_few_distinct_transcripts(ext_lm):
    model, tok, info = ext_lm
    with pytest.raises(ValueError, match="distinct transcripts"):
        train_contrastive(
            model, tok, info, [([1], "a"), ([2], "a")], PoolingConfig(), ContrastiveConfig(max_steps=1, batch_size=2)
        )


def test_translation_pairs_file(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("hello\tbonjour\n\nthe cat\tle chat\n")
    assert read_translation_pairs(p) == [("hello", "bonjour"), ("the cat", "le chat")]
    p.write_text("hello bonjour\nthe cat\tle chat\n")
    with pytest.raises(ValueError, match=r"pairs.tsv:1"):
        read_translation_pairs(p)
