"""Frozen base + trainable delta: checkpoints of LlmDecoder / HfSpeechEncoder store only what
is trained plus a reference (path + content hash) to the base, and load through torch, ESPnet's
averaging, ``--init_param`` and old full checkpoints.

Tiny random models are saved with ``save_pretrained`` and loaded through ``from_pretrained``,
as a user's model is; the size test uses the real SmolLM2-135M.
"""

import hashlib
import json
import os
import shutil

import pytest
import torch
from tiny_models import TINY_BOS, TINY_EOS, TINY_PAD, TINY_SPECIALS, TINY_WORDS, save_tiny_word_llm

from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
from espnet_llm_plugin.core.base_weights import (
    MANIFEST,
    PATH_KEY,
    SHA256_KEY,
    BaseMismatchError,
    base_content_hash,
    checkpoint_base_reference,
)

WORDS, SPECIALS = TINY_WORDS, TINY_SPECIALS
V = len(SPECIALS) + len(WORDS)
PAD, BOS, EOS = TINY_PAD, TINY_BOS, TINY_EOS
D = 32


def save_llm(d, seed=0):
    return save_tiny_word_llm(d, seed=seed, max_position_embeddings=64)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return save_llm(tmp_path_factory.mktemp("tiny_llm"))


def make_decoder(llm_dir, **kw):
    args = dict(llm_path=str(llm_dir), prompt="the cat", finetune="lora", lora_r=4, lora_dropout=0.0)
    args.update(kw)
    return LlmDecoder(vocab_size=V, encoder_output_size=D, **args)


def perturb(module, seed, what="lora_B"):
    """Give trained-looking values to the parameters named ``what`` (LoRA B starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if what in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


ARGS = (
    torch.randn(1, 5, D, generator=torch.Generator().manual_seed(5)),
    torch.tensor([5]),
    torch.tensor([[EOS, 5, 6, 7]]),
    torch.tensor([4]),
)


def outputs(dec):
    with torch.no_grad():
        return dec.eval()(*ARGS)[0]


def trainable_names(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def file_sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- content hash
def test_content_hash_over_weight_files_and_manifest(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(os.urandom(1000))
    (d / "tokenizer.json").write_text("{}")  # not a weight file
    lines = f"model.safetensors\t{file_sha256(d / 'model.safetensors')}\n"
    expected = hashlib.sha256(lines.encode()).hexdigest()
    assert base_content_hash(d) == expected
    (d / "tokenizer.json").write_text('{"changed": 1}')
    assert base_content_hash(d) == expected

    # a manifest written after the weights is trusted (size checked): the file is not re-read
    recorded = "ab" * 32
    (d / MANIFEST).write_text(json.dumps({"files": {"model.safetensors": {"sha256": recorded, "size": 1000}}}))
    st = (d / "model.safetensors").stat()
    os.utime(d / MANIFEST, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert base_content_hash(d) == hashlib.sha256(f"model.safetensors\t{recorded}\n".encode()).hexdigest()
    # ... not when the size differs
    (d / MANIFEST).write_text(json.dumps({"files": {"model.safetensors": {"sha256": recorded, "size": 999}}}))
    os.utime(d / MANIFEST, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert base_content_hash(d) == expected
    # ... nor when the weights are newer than the manifest (changed in place, same size)
    (d / MANIFEST).write_text(json.dumps({"files": {"model.safetensors": {"sha256": recorded, "size": 1000}}}))
    os.utime(d / MANIFEST, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert base_content_hash(d) == expected

    # one byte changed: another hash (a new mtime makes the per-process cache miss)
    data = bytearray((d / "model.safetensors").read_bytes())
    data[500] ^= 1
    (d / "model.safetensors").write_bytes(bytes(data))
    os.utime(d / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 3 * 10**9))
    assert base_content_hash(d) != expected

    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no weight files"):
        base_content_hash(d)


# ---------------------------------------------------------------- what is saved
@pytest.mark.parametrize("finetune", ["lora", "frozen"])
def test_state_dict_holds_trainable_parameters_and_reference(llm_dir, finetune):
    dec = make_decoder(llm_dir, finetune=finetune)
    sd = dec.state_dict()
    assert set(sd) == trainable_names(dec) | {SHA256_KEY, PATH_KEY}
    assert checkpoint_base_reference(sd) == (base_content_hash(llm_dir), str(llm_dir))
    if finetune == "frozen":
        assert trainable_names(dec) == set()


def test_full_finetuning_keeps_torch_state_dict(llm_dir):
    dec = make_decoder(llm_dir, finetune="full")
    sd = dec.state_dict()
    dec._frozen_base.remove()
    assert list(sd) == list(dec.state_dict())
    assert checkpoint_base_reference(sd) is None
    assert any(k.endswith("embed_tokens.weight") for k in sd)


def test_parameters_frozen_later_are_saved(llm_dir):
    # ESPnet's --freeze_param freezes after construction: those are not base and must be saved
    dec = make_decoder(llm_dir)
    lora = next(n for n, p in dec.named_parameters() if "lora_A" in n)
    dec.get_parameter(lora).requires_grad_(False)
    assert lora in dec.state_dict()


# ---------------------------------------------------------------- loading
def test_round_trip_weights_only_identical_outputs(llm_dir, tmp_path):
    src = perturb(make_decoder(llm_dir), seed=3)
    torch.save(src.state_dict(), tmp_path / "dec.pth")
    dst = make_decoder(llm_dir)
    assert not torch.allclose(outputs(src), outputs(dst), atol=1e-4)  # the test can fail
    dst.load_state_dict(torch.load(tmp_path / "dec.pth", weights_only=True))  # strict
    assert torch.equal(outputs(dst), outputs(src))


def test_changed_base_is_refused(llm_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    shutil.copytree(llm_dir, base)
    src = perturb(make_decoder(base), seed=4)
    torch.save(src.state_dict(), tmp_path / "dec.pth")
    before = base_content_hash(base)
    # one weight of the base altered, saved in place
    model = AutoModelForCausalLM.from_pretrained(str(base))
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] += 0.5
    model.save_pretrained(base)
    after = base_content_hash(base)
    assert after != before
    dst = make_decoder(base)
    with pytest.raises(BaseMismatchError) as e:
        dst.load_state_dict(torch.load(tmp_path / "dec.pth", weights_only=True))
    msg = str(e.value)
    assert before in msg and after in msg and str(base) in msg and "decoder_conf.llm_path" in msg


def test_old_full_checkpoint_still_loads(llm_dir, tmp_path):
    src = perturb(make_decoder(llm_dir), seed=5)
    src._frozen_base.remove()  # what the decoder saved before base references existed
    full = src.state_dict()
    assert len(full) > len(trainable_names(src)) and SHA256_KEY not in full
    torch.save(full, tmp_path / "old.pth")
    dst = make_decoder(llm_dir)
    dst.load_state_dict(torch.load(tmp_path / "old.pth", weights_only=True))  # strict
    assert torch.equal(outputs(dst), outputs(src))


def test_reference_without_base_keys_does_not_hide_missing_trained_keys(llm_dir):
    sd = make_decoder(llm_dir).state_dict()
    lora = next(k for k in sd if "lora_B" in k)
    del sd[lora]
    with pytest.raises(RuntimeError, match="Missing key"):
        make_decoder(llm_dir).load_state_dict(sd)


def test_espnet_init_param_loads_delta(llm_dir, tmp_path):
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    src = torch.nn.Module()
    src.decoder = perturb(make_decoder(llm_dir), seed=6)
    torch.save(src.state_dict(), tmp_path / "model.pth")
    dst = torch.nn.Module()
    dst.decoder = make_decoder(llm_dir)
    load_pretrained_model(f"{tmp_path / 'model.pth'}:decoder:decoder", dst, ignore_init_mismatch=False)
    assert torch.equal(outputs(dst.decoder), outputs(src.decoder))


def test_espnet_average_nbest_models_keeps_reference(llm_dir, tmp_path):
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    decs = [perturb(make_decoder(llm_dir), seed=s) for s in (7, 8)]
    reporter = Reporter()
    for epoch, (dec, acc) in enumerate(zip(decs, (0.5, 0.6)), start=1):
        torch.save(dec.state_dict(), tmp_path / f"{epoch}epoch.pth")
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"acc": acc})
            sub.next()
    average_nbest_models(tmp_path, reporter, [("valid", "acc", "max")], nbest=2)
    avg = torch.load(tmp_path / "valid.acc.ave_2best.pth", weights_only=True)
    assert checkpoint_base_reference(avg) == (base_content_hash(llm_dir), str(llm_dir))
    sds = [torch.load(tmp_path / f"{e}epoch.pth", weights_only=True) for e in (1, 2)]
    lora = next(k for k in avg if "lora_B" in k)
    assert torch.allclose(avg[lora], (sds[0][lora] + sds[1][lora]) / 2)
    dst = make_decoder(llm_dir)
    dst.load_state_dict(avg)
    assert torch.equal(dst.get_parameter(lora), avg[lora])


def test_average_over_different_bases_is_refused(llm_dir, tmp_path):
    other = save_llm(tmp_path / "other", seed=1)
    sds = [make_decoder(d).state_dict() for d in (llm_dir, other)]
    avg = {k: (sds[0][k] + sds[1][k]) / 2 for k in sds[0] if k != PATH_KEY}
    avg[PATH_KEY] = sds[0][PATH_KEY]
    with pytest.raises(ValueError, match="different base models|sha256"):
        make_decoder(llm_dir).load_state_dict(avg)


# ---------------------------------------------------------------- HF speech encoder
def test_hf_speech_encoder_lora_saves_delta(tmp_path):
    import transformers

    from espnet_llm_plugin.asr.hf_speech_encoder import HfSpeechEncoder

    config = transformers.AutoConfig.for_model(
        "wav2vec2",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        conv_bias=True,
        feat_extract_norm="layer",
    )
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(tmp_path / "ssl")

    def build():
        return HfSpeechEncoder(model_path=str(tmp_path / "ssl"), finetune="lora", lora_r=2)

    src = perturb(build(), seed=9)
    sd = src.state_dict()
    assert set(sd) == trainable_names(src) | {SHA256_KEY, PATH_KEY}
    torch.save(sd, tmp_path / "enc.pth")
    dst = build()
    dst.load_state_dict(torch.load(tmp_path / "enc.pth", weights_only=True))
    wav = torch.randn(1, 400, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(dst.eval()(wav, torch.tensor([400]))[0], src.eval()(wav, torch.tensor([400]))[0])


# ---------------------------------------------------------------- real model
@pytest.mark.real_model
def test_smollm2_lora_checkpoint_is_small(smollm2_dir, tmp_path):
    def build():
        return LlmDecoder(
            vocab_size=49152, encoder_output_size=576, llm_path=str(smollm2_dir), finetune="lora", lora_dropout=0.0
        )

    src = perturb(build(), seed=10)
    torch.save(src.state_dict(), tmp_path / "dec.pth")
    size = (tmp_path / "dec.pth").stat().st_size
    assert size < 20_000_000, f"{size / 1e6:.1f} MB"  # the whole LLM would be ~540 MB
    dst = build()
    dst.load_state_dict(torch.load(tmp_path / "dec.pth", weights_only=True))
    hs = torch.randn(1, 4, 576, generator=torch.Generator().manual_seed(0))
    args = (hs, torch.tensor([4]), torch.tensor([[2, 504, 3151]]), torch.tensor([3]))
    with torch.no_grad():
        assert torch.equal(dst.eval()(*args)[0], src.eval()(*args)[0])
