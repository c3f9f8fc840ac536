"""HfSpeechEncoder: HF SSL encoders (HuBERT / wav2vec2 / WavLM) as an ESPnet encoder.

Tiny random models are built from configs and saved with ``save_pretrained``, then loaded
through the same ``from_pretrained(local dir)`` path a real checkpoint takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
import torch

from espnet_llm_plugin.asr.hf_speech_encoder import HfSpeechEncoder, receptive_field

transformers = pytest.importorskip("transformers")

# small conv stack: receptive field 20 samples, 10 samples per frame
CONV = dict(conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=True)
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    **CONV,
)
MIN_SAMPLES = 20

# name -> (model_type, extra config). Covers both feature-encoder norms (group / layer) and
# both Transformer layouts (post-LN; "stable" pre-LN with a final encoder LayerNorm).
SPECS: Dict[str, tuple] = {
    "hubert": ("hubert", dict(feat_extract_norm="group")),
    "hubert_stable": ("hubert", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "wav2vec2": ("wav2vec2", dict(feat_extract_norm="layer")),
    "wavlm": ("wavlm", dict(feat_extract_norm="layer", num_buckets=16, max_bucket_distance=40)),
    "wavlm_stable": (
        "wavlm",
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16, max_bucket_distance=40),
    ),
}
# wav2vec2-style models whose CNN normalises per frame (LayerNorm over channels). A group-norm
# CNN (wav2vec2-base, HuBERT-base) normalises each channel over the whole padded time axis, so
# padding changes every frame and no padding invariance can be expected from it.
LAYER_NORM_CNN = ["hubert_stable", "wav2vec2", "wavlm", "wavlm_stable"]


def tiny_config(name: str):
    model_type, extra = SPECS[name]
    return transformers.AutoConfig.for_model(model_type, **TINY, **extra)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # ops on these tiny models are microseconds; with several threads on a busy machine the
    # OpenMP hand-offs dominate (100x slower), so run the module single-threaded
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_speech")
    dirs = {}
    for i, name in enumerate(SPECS):
        torch.manual_seed(i)
        model = transformers.AutoModel.from_config(tiny_config(name))
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
    return dirs


def reference(path: Path):
    return transformers.AutoModel.from_pretrained(str(path), local_files_only=True).eval()


def make_encoder(path: Path, **kw) -> HfSpeechEncoder:
    kw.setdefault("finetune", "frozen")
    kw.setdefault("normalize_waveform", False)
    kw.setdefault("use_attention_mask", True)
    return HfSpeechEncoder(input_size=1, model_path=str(path), **kw).eval()


def batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, generator=g)
    return x, torch.tensor(lengths)


def conv_lengths(n: int) -> int:
    for k, s in zip(CONV["conv_kernel"], CONV["conv_stride"]):
        n = (n - k) // s + 1
    return n


# ---------------------------------------------------------------- outputs vs. the HF model
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("layer", [-1, 0, 1, -2])
def test_output_matches_hf_hidden_states(model_dirs, name, layer):
    enc = make_encoder(model_dirs[name], layer=layer)
    ref = reference(model_dirs[name])
    x, lens = batch([800, 563, 400])
    out, olens, states = enc(x, lens)
    with torch.no_grad():
        mask = (torch.arange(x.size(1))[None] < lens[:, None]).long()
        expected = ref(x, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
    assert states is None
    assert out.shape == expected.shape == (3, conv_lengths(800), 32)
    assert olens.tolist() == [conv_lengths(n) for n in lens.tolist()]
    assert torch.equal(olens, ref._get_feat_extract_output_lengths(lens))
    for i, n in enumerate(olens.tolist()):
        torch.testing.assert_close(out[i, :n], expected[i, :n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(SPECS))
def test_final_layer_norm_gives_last_hidden_state(model_dirs, name):
    enc = make_encoder(model_dirs[name], layer=-1, final_layer_norm=True)
    x, lens = batch([640, 640])
    out, _, _ = enc(x, lens)
    with torch.no_grad():
        expected = reference(model_dirs[name])(x).last_hidden_state
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", LAYER_NORM_CNN)
def test_padded_batch_equals_unbatched(model_dirs, name):
    enc = make_encoder(model_dirs[name], normalize_waveform=True, use_attention_mask=True)
    lengths = [900, 517, 233]
    x, lens = batch(lengths, seed=3)
    x[1, 517:] = 5.0  # garbage in the padding must not matter
    out, olens, _ = enc(x, lens)
    for i, n in enumerate(lengths):
        single, single_len, _ = enc(x[i : i + 1, :n], lens[i : i + 1])
        assert int(single_len) == int(olens[i]) == single.size(1)
        torch.testing.assert_close(out[i, : int(olens[i])], single[0], atol=1e-5, rtol=1e-4)


def test_trailing_padding_beyond_longest_is_trimmed(model_dirs):
    # ESPnet asserts encoder_out.size(1) <= encoder_out_lens.max()
    enc = make_encoder(model_dirs["wav2vec2"])
    x, lens = batch([500, 300])
    x = torch.cat([x, torch.zeros(2, 200)], dim=1)
    out, olens, _ = enc(x, lens)
    assert out.size(1) == int(olens.max()) == conv_lengths(500)


def test_three_dim_input_is_accepted(model_dirs):
    enc = make_encoder(model_dirs["hubert"])
    x, lens = batch([400, 350])
    a, alens, _ = enc(x, lens)
    b, blens, _ = enc(x.unsqueeze(-1), lens)
    assert torch.equal(alens, blens)
    torch.testing.assert_close(a, b)


def test_waveform_normalisation_matches_hf_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    x, lens = batch([700, 410, 90], seed=7)
    x = 3.0 * x + 0.5
    valid = torch.arange(x.size(1))[None] < lens[:, None]
    ours = HfSpeechEncoder._normalize(x, valid, lens)
    theirs = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        [row.numpy() for row in x], attention_mask=[v.long().numpy() for v in valid]
    )
    for i in range(3):
        torch.testing.assert_close(ours[i], torch.from_numpy(theirs[i]), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- layer selection
def test_layers_above_the_selected_one_are_removed(model_dirs):
    path = model_dirs["hubert"]
    outs = {}
    for layer, kept in [(0, 0), (1, 1), (2, 2), (-1, 2), (-2, 1), (-3, 0)]:
        enc = make_encoder(path, layer=layer)
        assert len(enc._hf.encoder.layers) == kept and enc.layer == kept
        outs[kept] = enc(*batch([400]))[0]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])


def test_layer_out_of_range_names_key_and_range(model_dirs):
    for bad in (3, -4):
        with pytest.raises(ValueError, match=r"encoder_conf\.layer=.*0\.\.2.*-3\.\.-1"):
            make_encoder(model_dirs["hubert"], layer=bad)


# ---------------------------------------------------------------- fine-tuning schemes
def _cnn_params(enc: HfSpeechEncoder) -> int:
    return sum(p.numel() for p in enc._hf.feature_extractor.parameters())


def test_frozen_has_no_trainable_parameters_and_stays_in_eval(model_dirs):
    enc = make_encoder(model_dirs["wav2vec2"], finetune="frozen", layerdrop=0.5)
    enc.train()
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == 0
    assert not enc.model.training  # no dropout / layerdrop in a fixed feature extractor
    x, lens = batch([400, 400])
    a = enc(x, lens)[0]
    assert not a.requires_grad
    torch.testing.assert_close(a, enc(x, lens)[0])  # deterministic in train mode


def test_lora_trains_only_adapters_with_paper_defaults(model_dirs):
    enc = make_encoder(model_dirs["hubert"], finetune="lora")
    trainable = {n: p for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    # r * (in + out) per adapted Linear, r = 8; every Linear is adapted by default
    linears = [m for m in enc.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A")]
    expected = sum(8 * (m.in_features + m.out_features) for m in linears)
    assert sum(p.numel() for p in trainable.values()) == expected > 0
    assert all(m.scaling["default"] == 16 / 8 for m in linears)
    # the CNN builds no graph (HF's _requires_grad flag is cleared with its parameters)
    assert enc._hf.feature_extractor._requires_grad is False
    enc.train()
    out, olens, _ = enc(*batch([500, 420]))
    out.sum().backward()
    assert all(p.grad is not None for n, p in trainable.items() if "lora_B" in n)


def test_full_trains_all_but_the_cnn(model_dirs):
    enc = make_encoder(model_dirs["hubert"], finetune="full")
    total = sum(p.numel() for p in enc.parameters())
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    unused = enc._hf.masked_spec_embed.numel()  # exists (mask_time_prob > 0), unused: frozen
    assert trainable == total - _cnn_params(enc) - unused
    assert not any(p.requires_grad for p in enc._hf.feature_extractor.parameters())

    enc = make_encoder(model_dirs["hubert"], finetune="full", freeze_feature_extractor=False)
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == total - unused
    enc.train()
    out, _, _ = enc(*batch([500, 420]))
    out.sum().backward()
    # every trainable parameter gets a gradient (DDP with unused_parameters: false needs it)
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_lora_options_and_bad_scheme(model_dirs):
    enc = make_encoder(model_dirs["wavlm"], finetune="lora", lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    names = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert names and all(("q_proj" in n or "v_proj" in n) and ".lora_" in n for n in names)
    with pytest.raises(ValueError, match="finetune scheme"):
        make_encoder(model_dirs["wavlm"], finetune="partial")


# ---------------------------------------------------------------- pretrained weights
@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_reload_pretrained_parameters_undoes_espnet_init(model_dirs, finetune):
    from espnet2.torch_utils.initialize import initialize

    enc = make_encoder(model_dirs["wavlm_stable"], finetune=finetune)
    x, lens = batch([600, 450])
    with torch.no_grad():
        before = enc(x, lens)[0]
    initialize(enc, "xavier_uniform")
    with torch.no_grad():
        assert not torch.allclose(enc(x, lens)[0], before)
    enc.reload_pretrained_parameters()
    with torch.no_grad():
        torch.testing.assert_close(enc(x, lens)[0], before)
        # LoRA B is zero again: the adapted model equals the pretrained one
        expected = reference(model_dirs["wavlm_stable"])(
            x, attention_mask=(torch.arange(600)[None] < lens[:, None]).long(), output_hidden_states=True
        ).hidden_states[-1]
    torch.testing.assert_close(before[0], expected[0], atol=1e-5, rtol=1e-4)


def test_config_mode_dict_and_json(model_dirs, tmp_path):
    model_type, extra = SPECS["wav2vec2"]
    conf = dict(model_type=model_type, **TINY, **extra)
    torch.manual_seed(0)
    a = HfSpeechEncoder(input_size=1, config=conf, finetune="lora")
    (tmp_path / "config.json").write_text(json.dumps(conf))
    b = HfSpeechEncoder(input_size=1, config=str(tmp_path / "config.json"), finetune="frozen")
    assert a.output_size() == b.output_size() == 32
    x, lens = batch([400, 380])
    assert a(x, lens)[0].shape == b(x, lens)[0].shape == (2, conv_lengths(400), 32)
    a.eval()
    with torch.no_grad():
        before = a(x, lens)[0]
        for p in a.parameters():
            p.normal_()
        a.reload_pretrained_parameters()
        torch.testing.assert_close(a(x, lens)[0], before)


def test_preprocessor_config_sets_defaults(model_dirs, tmp_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(model_dirs["wav2vec2"], path)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": False, "return_attention_mask": False, "sampling_rate": 16000})
    )
    enc = HfSpeechEncoder(model_path=str(path), finetune="frozen")
    assert (enc.normalize_waveform, enc.use_attention_mask, enc.sampling_rate) == (False, False, 16000)
    # without one: normalise, and mask only for a layer-norm CNN (HF's advice)
    assert HfSpeechEncoder(model_path=str(model_dirs["wav2vec2"]), finetune="frozen").use_attention_mask
    enc = HfSpeechEncoder(model_path=str(model_dirs["hubert"]), finetune="frozen")
    assert enc.normalize_waveform and not enc.use_attention_mask


# ---------------------------------------------------------------- errors
def test_missing_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"encoder_conf\.model_path=.*nowhere"):
        HfSpeechEncoder(model_path=str(tmp_path / "nowhere"))


def test_model_path_not_a_speech_model(tmp_path):
    cfg = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50
    )
    cfg.save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match=r"'llama' model is not a supported speech encoder"):
        HfSpeechEncoder(model_path=str(tmp_path / "llama"))


def test_model_path_and_config_are_exclusive(model_dirs):
    with pytest.raises(ValueError, match="exactly one of"):
        HfSpeechEncoder()
    with pytest.raises(ValueError, match="exactly one of"):
        HfSpeechEncoder(model_path=str(model_dirs["hubert"]), config={"model_type": "hubert"})


def test_frontend_output_size_is_rejected(model_dirs):
    with pytest.raises(ValueError, match="input_size: 1"):
        HfSpeechEncoder(input_size=80, model_path=str(model_dirs["hubert"]))


def test_unknown_hf_config_override(model_dirs):
    with pytest.raises(ValueError, match=r"hf_config_overrides\.no_such_field"):
        make_encoder(model_dirs["hubert"], hf_config_overrides={"no_such_field": 1})


def test_audio_shorter_than_receptive_field(model_dirs):
    enc = make_encoder(model_dirs["hubert"])
    assert enc.min_samples == MIN_SAMPLES == receptive_field(CONV["conv_kernel"], CONV["conv_stride"])
    assert enc(*batch([MIN_SAMPLES]))[1].tolist() == [1]
    with pytest.raises(ValueError, match=rf"utterance 1 .* 19 samples.* {MIN_SAMPLES} samples"):
        enc(*batch([400, MIN_SAMPLES - 1]))


def test_bad_input_shapes(model_dirs):
    enc = make_encoder(model_dirs["hubert"])
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, T, 1\)"):
        enc(torch.zeros(2, 400, 2), torch.tensor([400, 400]))
    with pytest.raises(ValueError, match="ilens"):
        enc(torch.zeros(2, 400), torch.tensor([400]))


def test_receptive_field_of_the_standard_wav2vec2_cnn():
    assert receptive_field((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == 400


# ---------------------------------------------------------------- gradient checkpointing
def _mlp_pre_hook_counter(enc: HfSpeechEncoder) -> list:
    calls: list = []
    for name, module in enc.named_modules():
        if name.endswith(".feed_forward"):  # pre-hook: counts the recomputation in backward too
            module.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "name, finetune, cnn",
    [("hubert", "lora", False), ("wavlm_stable", "lora", False), ("wav2vec2", "full", True)],
)
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(model_dirs, name, finetune, cnn):
    kw = dict(finetune=finetune, freeze_feature_extractor=not cnn)
    plain = make_encoder(model_dirs[name], **kw)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for n, p in plain.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    ckpt = make_encoder(model_dirs[name], gradient_checkpointing=True, **kw)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.gradient_checkpointing and not plain.gradient_checkpointing
    calls = _mlp_pre_hook_counter(ckpt)
    x, lens = batch([700, 520])
    results = []
    for enc in (plain, ckpt):
        enc.train()  # dropout on (tiny config: 0.1): recomputation must replay its masks
        torch.manual_seed(0)
        out, olens, _ = enc(x, lens)
        loss = (out**2).mean()
        loss.backward()
        results.append((out.detach(), {n: p.grad for n, p in enc.named_parameters() if p.grad is not None}))
    n_layers = len(ckpt._hf.encoder.layers)
    assert len(calls) == 2 * n_layers  # each layer ran again in backward
    (out, grads), (out_c, grads_c) = results
    torch.testing.assert_close(out_c, out)
    assert grads and grads_c.keys() == grads.keys()
    assert cnn == any("feature_extractor" in n for n in grads)
    for n, grad in grads.items():
        torch.testing.assert_close(grads_c[n], grad, msg=n)


def test_gradient_checkpointing_is_ignored_for_a_frozen_encoder(model_dirs, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="espnet_llm_plugin"):
        enc = make_encoder(model_dirs["hubert"], finetune="frozen", gradient_checkpointing=True)
    assert not enc.gradient_checkpointing
    assert not any(getattr(m, "gradient_checkpointing", False) for m in enc._hf.modules())
    assert any("ignored with finetune=frozen" in r.getMessage() for r in caplog.records)
