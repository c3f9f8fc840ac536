"""Small causal LM pre-training: learning, save/load through from_pretrained, resumption."""

import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from espnet_llm_plugin.lm.causal_lm_pretraining import (
    LmConfig,
    TrainConfig,
    batch_indices,
    build_llama,
    lr_at,
    packed_rows,
    padded_rows,
    save_pretrained_dir,
    train_causal_lm,
)
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer

SUBJECTS = ["anna", "peter", "the cat", "my brother", "they"]
VERBS = ["reads a book", "walks home", "eats an apple", "sits on the chair"]
TRAIN = [f"{s} {v}" for s in SUBJECTS for v in VERBS] * 5
DEV = [f"{s} {v}" for s in SUBJECTS[::-1] for v in VERBS[1:]]
TINY = LmConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=128)


def tiny_train_cfg(**kw) -> TrainConfig:
    base = dict(
        max_steps=60,
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        warmup_steps=5,
        eval_every=30,
        save_every=10,
        log_every=10,
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TRAIN, vocab_size=300)


@pytest.fixture(scope="module")
def trained(tokenizer):
    model = build_llama(tokenizer, TINY, seed=0)
    log = train_causal_lm(model, tokenizer, TRAIN, DEV, tiny_train_cfg(), device=torch.device("cpu"))
    return model, log


def test_training_lowers_dev_perplexity(trained, tokenizer):
    model, log = trained
    # untrained: near-uniform over the vocabulary
    assert 0.5 * len(tokenizer) < log["initial_dev_ppl"] < 2 * len(tokenizer)
    assert log["final_dev_ppl"] < log["initial_dev_ppl"] / 20
    assert [e["step"] for e in log["dev"]] == [0, 30, 60]
    assert log["train"][-1]["loss"] < log["train"][0]["loss"]
    assert log["finished"] and log["selected_step"] in (30, 60)
    assert log["final_dev_ppl"] == min(e["ppl"] for e in log["dev"])  # keep_best
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_save_and_load_back_gives_identical_logits(trained, tokenizer, tmp_path):
    model, log = trained
    out = tmp_path / "lm"
    save_pretrained_dir(out, model, tokenizer, {"train_log.json": log})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_log.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert json.loads((out / "train_log.json").read_text())["final_dev_ppl"] == log["final_dev_ppl"]

    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([[tok.bos_token_id, *tok("anna reads a book")["input_ids"]]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    # the LM learnt the corpus: greedy continuation of a subject is a training sentence
    prompt = torch.tensor([[tok.bos_token_id, *tok("peter")["input_ids"]]])
    gen = loaded.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(gen[0], skip_special_tokens=True)
    assert text in TRAIN, text


def test_resume_reproduces_an_uninterrupted_run(tokenizer, tmp_path, caplog):
    cfg = tiny_train_cfg(max_steps=20, eval_every=10, keep_best=False)
    cpu = torch.device("cpu")
    straight = build_llama(tokenizer, TINY, seed=0)
    log_a = train_causal_lm(straight, tokenizer, TRAIN, DEV, cfg, device=cpu)

    ckpt = tmp_path / "ckpt"
    first = build_llama(tokenizer, TINY, seed=0)
    log_b = train_causal_lm(first, tokenizer, TRAIN, DEV, cfg, ckpt_dir=ckpt, device=cpu, stop_at_step=10)
    assert not log_b["finished"]
    files = sorted(p.name for p in ckpt.iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 10

    second = build_llama(tokenizer, TINY, seed=123)  # other init: the checkpoint must win
    with caplog.at_level(logging.INFO):
        log_c = train_causal_lm(second, tokenizer, TRAIN, DEV, cfg, ckpt_dir=ckpt, device=cpu)
    assert "resumed from" in caplog.text
    assert log_c["finished"]
    assert log_c["dev"] == log_a["dev"]
    for (name, a), (_, b) in zip(straight.state_dict().items(), second.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name

    # other settings: the checkpoint is not used
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train_causal_lm(
            build_llama(tokenizer, TINY),
            tokenizer,
            TRAIN,
            DEV,
            tiny_train_cfg(max_steps=2, lr=1e-3),
            ckpt_dir=ckpt,
            device=cpu,
        )
    assert "other settings" in caplog.text and "resumed" not in caplog.text


def test_padded_batches_also_learn(tokenizer):
    model = build_llama(tokenizer, TINY, seed=0)
    log = train_causal_lm(
        model,
        tokenizer,
        TRAIN,
        DEV,
        tiny_train_cfg(packing=False, max_steps=40, eval_every=40),
        device=torch.device("cpu"),
    )
    assert log["final_dev_ppl"] < log["initial_dev_ppl"] / 10


def test_rows_and_batches():
    lines = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    rows, mask = packed_rows(lines, 4)
    assert rows.tolist() == [[1, 5, 6, 2], [1, 7, 2, 1], [8, 9, 10, 2]]
    assert mask.all()
    ids, mask = padded_rows(lines, 4, pad_id=3)
    assert ids.tolist() == [[1, 5, 6, 2], [1, 7, 2, 3], [1, 8, 9, 10]]
    assert mask.tolist()[1] == [1, 1, 1, 0]
    # every epoch visits every row once; the same (seed, step) gives the same batch
    epoch = torch.cat([batch_indices(10, 5, s, seed=0) for s in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert torch.equal(batch_indices(10, 5, 7, 0), batch_indices(10, 5, 7, 0))


def test_lr_schedule():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


def test_bad_configs(tokenizer):
    with pytest.raises(ValueError, match="--hidden_size 30 is not divisible by --num_heads 4"):
        build_llama(tokenizer, LmConfig(hidden_size=30, num_heads=4))
    model = build_llama(tokenizer, TINY)
    with pytest.raises(ValueError, match="--seq_len 256 exceeds"):
        train_causal_lm(model, tokenizer, TRAIN, DEV, tiny_train_cfg(seq_len=256))
    with pytest.raises(ValueError, match="--max_steps must be positive"):
        train_causal_lm(model, tokenizer, TRAIN, DEV, tiny_train_cfg(max_steps=0))
    with pytest.raises(ValueError, match="no non-empty training text"):
        train_causal_lm(model, tokenizer, ["", " "], DEV, tiny_train_cfg())
