"""load_causal_lm and the peft-agnostic accessors, on a tiny locally built Llama + tokenizer."""

import shutil
import warnings

import pytest
import torch

from espnet_llm_plugin.asr.finetune import LoraOptions, apply_finetune
from espnet_llm_plugin.asr.hf_causal_lm import (
    LlmLoadError,
    cache_kwarg,
    input_embedding,
    load_causal_lm,
    max_positions,
    output_cache,
    resolve_dtype,
    unwrap_peft,
)

WORDS = "the a cat dog sat on mat ran to home big small red blue one two".split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tiny_llm(out_dir, hidden=32, seed=0):
    """Save a WordLevel tokenizer and a random 2-layer Llama to ``out_dir``; return the vocab size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    hf_tok.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return len(vocab)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_llm")
    build_tiny_llm(d)
    return d


def test_load_returns_model_and_tokenizer_from_the_directory(llm_dir):
    model, tok = load_causal_lm(llm_dir)
    assert len(tok) == len(SPECIALS) + len(WORDS)
    assert tok.eos_token_id == 3 and tok.bos_token_id == 2
    assert tok("the cat", add_special_tokens=False).input_ids == [4, 6]
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    emb, hidden = input_embedding(model)
    assert hidden == 32 and emb.weight.shape == (len(tok), 32)
    assert max_positions(model) == 64


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "no_such_llm"
    with pytest.raises(LlmLoadError, match="no_such_llm.*does not exist"):
        load_causal_lm(missing)


def test_dir_without_config_is_not_a_model_dir(tmp_path):
    with pytest.raises(LlmLoadError, match="no config.json"):
        load_causal_lm(tmp_path)


def test_dir_without_tokenizer_names_expected_files(llm_dir, tmp_path):
    model_only = tmp_path / "model_only"
    model_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(llm_dir / name, model_only / name)
    with pytest.raises(LlmLoadError, match=r"model_only has no tokenizer.*tokenizer\.json"):
        load_causal_lm(model_only)


def test_dtype_names_and_cpu_fallback(llm_dir):
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp8")
    assert resolve_dtype(None) == torch.float32
    assert resolve_dtype("float32", "cpu") == torch.float32
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        assert resolve_dtype("bfloat16", "cpu") == torch.float32
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        model, _ = load_causal_lm(llm_dir, dtype="float16", device="cpu")
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half types are loaded only with CUDA")
def test_half_dtype_is_kept_with_cuda(llm_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = load_causal_lm(llm_dir, dtype="bfloat16", device="cuda")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_accessors_see_through_peft(llm_dir):
    model, _ = load_causal_lm(llm_dir)
    emb_plain, _ = input_embedding(model)
    wrapped = apply_finetune(model, "lora", LoraOptions(r=2, dropout=0.0), name="llm")
    assert wrapped is not model and unwrap_peft(wrapped) is model
    emb, hidden = input_embedding(wrapped)
    assert emb is emb_plain and hidden == 32
    out = model(input_ids=torch.tensor([[2, 4, 6]]), use_cache=True)
    cache = output_cache(out)
    assert cache.get_seq_length() == 3
    # the name must be accepted by forward: feeding the cache back continues the sequence
    out2 = model(input_ids=torch.tensor([[8]]), use_cache=True, **{cache_kwarg(wrapped): cache})
    assert output_cache(out2).get_seq_length() == 4
