"""load_causal_lm and the peft-agnostic accessors, on a tiny locally built Llama + tokenizer."""

import platform
import shutil
import warnings

import pytest
import torch
from tiny_models import save_tiny_llm

from espnet_llm_plugin.core import hf_causal_lm
from espnet_llm_plugin.core.finetune import LoraOptions, apply_finetune
from espnet_llm_plugin.core.hf_causal_lm import (
    LlmLoadError,
    cache_kwarg,
    input_embedding,
    llm_input_width,
    load_causal_lm,
    max_positions,
    output_cache,
    resolve_dtype,
    unwrap_peft,
)

WORDS = "the a cat dog sat on mat ran to home big small red blue one two".split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    """A WordLevel tokenizer and a random 2-layer Llama, saved as a user's LLM is."""
    return save_tiny_llm(
        tmp_path_factory.mktemp("tiny_llm"),
        SPECIALS + WORDS,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )


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


def test_dtype_names_and_cpu_fallback(llm_dir, monkeypatch):
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp8")
    assert resolve_dtype(None) == torch.float32
    assert resolve_dtype("float32", "cpu") == torch.float32
    with pytest.warns(UserWarning, match="float16 needs a CUDA device"):
        model, _ = load_causal_lm(llm_dir, dtype="float16", device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    # a CPU without native bfloat16 (the answer of another machine): float32, with a warning
    monkeypatch.setattr(hf_causal_lm, "cpu_supports_bfloat16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16 arithmetic"):
        assert resolve_dtype("bfloat16", "cpu") == torch.float32


def test_bfloat16_is_kept_on_a_cpu_that_supports_it(monkeypatch):
    monkeypatch.setattr(hf_causal_lm, "cpu_supports_bfloat16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
        assert resolve_dtype(torch.bfloat16, torch.device("cpu")) == torch.bfloat16
    with pytest.warns(UserWarning, match="float16 needs a CUDA device"):  # float16 never on a CPU
        assert resolve_dtype("float16", "cpu") == torch.float32


def test_cpu_bfloat16_check_follows_the_cpu_features():
    hf_causal_lm.cpu_supports_bfloat16.cache_clear()
    supported = hf_causal_lm.cpu_supports_bfloat16()
    if platform.machine().lower() in ("x86_64", "amd64"):
        native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        assert supported == native
    if not supported:
        return
    # where supported, a bfloat16 model really loads (and runs) in bfloat16 on the CPU
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


needs_cpu_bf16 = pytest.mark.skipif(
    not hf_causal_lm.cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 arithmetic"
)


@needs_cpu_bf16
def test_tiny_llm_loads_and_runs_in_bfloat16_on_cpu(llm_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = load_causal_lm(llm_dir, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, 4, 6]])).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


@pytest.mark.real_model
@needs_cpu_bf16
def test_smollm2_in_bfloat16_on_cpu_predicts_like_float32(smollm2, smollm2_dir):
    model32, tok = smollm2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model16, _ = load_causal_lm(smollm2_dir, dtype="bfloat16", device="cpu")
    weights = dict(model16.named_parameters())
    assert {p.dtype for p in weights.values()} == {torch.bfloat16}
    assert sum(p.numel() for p in weights.values()) == sum(p.numel() for p in model32.parameters())
    # prompts whose float32 top-1 leads the runner-up clearly (p 0.34-0.96 vs 0.01-0.23)
    prompts = [
        "The capital of France is",
        "One, two, three, four,",
        "Twinkle, twinkle, little",
        "Water boils at a temperature of 100 degrees",
        "Monday, Tuesday, Wednesday,",
    ]
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").input_ids
            top32 = model32(input_ids=ids).logits[0, -1]
            top16 = model16(input_ids=ids).logits[0, -1].float()
            assert top16.argmax() == top32.argmax(), (prompt, tok.decode(top16.argmax()), tok.decode(top32.argmax()))
            # the whole distribution, not only its top: bfloat16 rounding moves logits a little
            assert (
                torch.nn.functional.kl_div(
                    top16.log_softmax(-1), top32.log_softmax(-1), log_target=True, reduction="sum"
                )
                < 0.02
            ), prompt


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


def test_input_width_is_read_without_loading_weights(llm_dir, tmp_path):
    assert llm_input_width(llm_dir) == 32
    # OPT projects its embeddings: the width the adapter must produce is word_embed_proj_dim,
    # not hidden_size; read from a model built on the meta device
    from transformers import OPTConfig, OPTForCausalLM

    opt_dir = tmp_path / "opt"
    OPTForCausalLM(
        OPTConfig(
            vocab_size=len(SPECIALS) + len(WORDS),
            hidden_size=32,
            word_embed_proj_dim=16,
            ffn_dim=64,
            num_hidden_layers=1,
            num_attention_heads=2,
        )
    ).save_pretrained(opt_dir)
    shutil.copy(llm_dir / "tokenizer.json", opt_dir / "tokenizer.json")
    shutil.copy(llm_dir / "tokenizer_config.json", opt_dir / "tokenizer_config.json")
    assert llm_input_width(opt_dir) == 16
    model, _ = load_causal_lm(opt_dir)
    assert input_embedding(model)[1] == 16
    with pytest.raises(LlmLoadError, match="no_llm.*does not exist"):
        llm_input_width(tmp_path / "no_llm")


@pytest.mark.real_model
def test_smollm2_input_width(smollm2_dir, smollm2):
    assert llm_input_width(smollm2_dir) == input_embedding(smollm2[0])[1] == 576
