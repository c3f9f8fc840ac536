"""CTranslate2 Whisper -> Hugging Face: the model.bin reader and the weight mapping on a small
model written in CTranslate2's layout here, and, on the real packages, the converted models
decoding token for token as CTranslate2 itself does (greedy and 5-best)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

from espnet_llm_plugin.pretrained import ctranslate2_whisper as cw

# --------------------------------------------------------------------------------------------
# a small Whisper written in CTranslate2's format (independently of the reader under test)

CT2_DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}


def _str(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: Dict[str, torch.Tensor], aliases: Dict[str, str], version: int = 6) -> None:
    """CTranslate2 model.bin: variables sorted by name (as CTranslate2 writes them), then the
    aliases."""
    out = struct.pack("<I", version) + _str("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name in sorted(variables):
        t = variables[name].contiguous()
        out += _str(name) + struct.pack("<B", t.dim()) + b"".join(struct.pack("<I", d) for d in t.shape)
        data = t.numpy().tobytes()
        out += struct.pack("<B", CT2_DTYPE_IDS[t.dtype]) + struct.pack("<I", len(data)) + data
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _str(alias) + _str(target)
    path.write_bytes(out)


def small_whisper() -> torch.nn.Module:
    """A random 1+2-layer Whisper whose values are float16 numbers (as in CTranslate2 files);
    decoder layer 0's cross-attention output projection equals encoder layer 0's self-attention
    one, so CTranslate2 would store it as an alias of a variable written after it."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=40,
        num_mel_bins=4,
        d_model=8,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        max_source_positions=6,
        max_target_positions=5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=2,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p).half().float())
        dec0 = model.model.decoder.layers[0].encoder_attn.out_proj
        dec0.weight.copy_(model.model.encoder.layers[0].self_attn.out_proj.weight)
    return model


def to_ct2_layout(model: torch.nn.Module) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """``(variables, aliases)`` of ``model`` as CTranslate2's Whisper converter lays them out:
    fused projections (zero key bias), float16 weights, int scalars, the output projection and
    the duplicated attention projection as aliases."""
    h = lambda t: t.detach().half()  # noqa: E731
    v: Dict[str, torch.Tensor] = {
        "encoder/num_heads": torch.tensor(2, dtype=torch.int16),
        "decoder/num_heads": torch.tensor(2, dtype=torch.int16),
        "decoder/activation": torch.tensor(3, dtype=torch.int8),
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=torch.int8),
        "decoder/alibi": torch.tensor(0, dtype=torch.int8),
        "decoder/alignment_heads": torch.tensor(1, dtype=torch.int16),
    }
    enc, dec = model.model.encoder, model.model.decoder

    def lin(prefix, m, bias=True):
        v[f"{prefix}/weight"] = h(m.weight)
        if bias:
            v[f"{prefix}/bias"] = h(m.bias)

    def ln(prefix, m):
        v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = h(m.weight), h(m.bias)

    def self_attn(prefix, layer):
        a = layer.self_attn
        ln(f"{prefix}/self_attention/layer_norm", layer.self_attn_layer_norm)
        fused = f"{prefix}/self_attention/linear_0"
        v[f"{fused}/weight"] = h(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        v[f"{fused}/bias"] = h(torch.cat([a.q_proj.bias, torch.zeros_like(a.q_proj.bias), a.v_proj.bias]))
        lin(f"{prefix}/self_attention/linear_1", a.out_proj)

    def ffn(prefix, layer):
        ln(f"{prefix}/ffn/layer_norm", layer.final_layer_norm)
        lin(f"{prefix}/ffn/linear_0", layer.fc1)
        lin(f"{prefix}/ffn/linear_1", layer.fc2)

    lin("encoder/conv1", enc.conv1)
    lin("encoder/conv2", enc.conv2)
    v["encoder/position_encodings/encodings"] = h(enc.embed_positions.weight)
    for i, layer in enumerate(enc.layers):
        self_attn(f"encoder/layer_{i}", layer)
        ffn(f"encoder/layer_{i}", layer)
    ln("encoder/layer_norm", enc.layer_norm)
    v["decoder/embeddings/weight"] = h(dec.embed_tokens.weight)
    v["decoder/position_encodings/encodings"] = h(dec.embed_positions.weight)
    for i, layer in enumerate(dec.layers):
        p = f"decoder/layer_{i}"
        self_attn(p, layer)
        x = layer.encoder_attn
        ln(f"{p}/attention/layer_norm", layer.encoder_attn_layer_norm)
        lin(f"{p}/attention/linear_0", x.q_proj)
        v[f"{p}/attention/linear_1/weight"] = h(torch.cat([x.k_proj.weight, x.v_proj.weight]))
        v[f"{p}/attention/linear_1/bias"] = h(torch.cat([torch.zeros_like(x.v_proj.bias), x.v_proj.bias]))
        lin(f"{p}/attention/linear_2", x.out_proj)
        ffn(p, layer)
    ln("decoder/layer_norm", dec.layer_norm)
    aliased = "decoder/layer_0/attention/linear_2/weight"
    del v[aliased]
    aliases = {
        aliased: "encoder/layer_0/self_attention/linear_1/weight",  # stored after the alias's place
        "decoder/projection/weight": "decoder/embeddings/weight",
    }
    return v, aliases


@pytest.fixture(scope="module")
def small():
    model = small_whisper()
    variables, aliases = to_ct2_layout(model)
    return model, variables, aliases


def _convert_back(ct2: cw.Ct2Model) -> torch.nn.Module:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    sd, sizes = cw.whisper_state_dict(ct2)
    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
    model = WhisperForConditionalGeneration(WhisperConfig(**sizes, **ids)).eval()
    missing, unexpected = model.load_state_dict({k: t.float() for k, t in sd.items()}, strict=False)
    assert missing == ["proj_out.weight"] and unexpected == []  # tied to the embedding
    return model


def test_round_trip_through_the_ctranslate2_layout_is_exact(small, tmp_path):
    model, variables, aliases = small
    path = tmp_path / "model.bin"
    write_ct2(path, variables, aliases)
    back = _convert_back(cw.read_ct2_model([path]))
    assert back.config.d_model == 8 and back.config.decoder_layers == 2 and back.config.vocab_size == 40
    ref = model.state_dict()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    features = torch.randn(1, 4, 12)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(
            back(input_features=features, decoder_input_ids=ids).logits,
            model(input_features=features, decoder_input_ids=ids).logits,
        )


def test_parts_concatenate_to_the_whole_file(small, tmp_path):
    _, variables, aliases = small
    whole = tmp_path / "model.bin"
    write_ct2(whole, variables, aliases)
    data = whole.read_bytes()
    (tmp_path / "p1").write_bytes(data[:1001])  # a cut inside some variable's data
    (tmp_path / "p2").write_bytes(data[1001:])
    a, b = cw.read_ct2_model([whole]), cw.read_ct2_model([tmp_path / "p1", tmp_path / "p2"])
    assert a.variables.keys() == b.variables.keys()
    assert all(torch.equal(a.variables[k], b.variables[k]) for k in a.variables)
    with pytest.raises(cw.Ct2FormatError, match=r"p2 \+ .*p1 .*not a CTranslate2 model.bin, parts out of order"):
        cw.read_ct2_model([tmp_path / "p2", tmp_path / "p1"])  # wrong order


def test_alias_names_a_variable_stored_after_it(small, tmp_path):
    _, variables, aliases = small
    path = tmp_path / "model.bin"
    write_ct2(path, variables, aliases)
    ct2 = cw.read_ct2_model([path])
    alias = "decoder/layer_0/attention/linear_2/weight"
    assert ct2.aliases[alias] == "encoder/layer_0/self_attention/linear_1/weight"
    assert torch.equal(ct2.variables[alias], variables["encoder/layer_0/self_attention/linear_1/weight"])


def test_alias_of_an_alias_and_a_dangling_alias(small, tmp_path):
    _, variables, aliases = small
    chained = dict(aliases)
    chained["decoder/projection/weight"] = "decoder/extra"
    chained["decoder/extra"] = "decoder/embeddings/weight"
    write_ct2(tmp_path / "chain.bin", variables, chained)
    ct2 = cw.read_ct2_model([tmp_path / "chain.bin"])
    assert torch.equal(ct2.variables["decoder/projection/weight"], variables["decoder/embeddings/weight"])
    dangling = dict(aliases, **{"decoder/projection/weight": "decoder/nowhere"})
    write_ct2(tmp_path / "dangling.bin", variables, dangling)
    with pytest.raises(
        cw.Ct2FormatError, match="dangling.bin: alias decoder/projection/weight names 'decoder/nowhere'"
    ):
        cw.read_ct2_model([tmp_path / "dangling.bin"])


def test_truncated_file_and_other_version_are_named(small, tmp_path):
    _, variables, aliases = small
    path = tmp_path / "model.bin"
    write_ct2(path, variables, aliases)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(cw.Ct2FormatError, match=r"model.bin .*truncated"):
        cw.read_ct2_model([path])
    write_ct2(path, variables, aliases, version=5)
    with pytest.raises(cw.Ct2FormatError, match="version 5"):
        cw.read_ct2_model([path])
    with pytest.raises(cw.Ct2FormatError, match="does not exist"):
        cw.read_ct2_model([tmp_path / "absent.bin"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v["encoder/layer_0/self_attention/linear_0/bias"].__setitem__(9, 1.0), "non-zero key bias"),
        (lambda v: v.__setitem__("decoder/layer_1/ffn/linear_0/weight_scale", torch.ones(16)), "not understood"),
        (lambda v: v.__setitem__("encoder/conv1/weight", v["encoder/conv1/weight"].to(torch.int8)), "quantised"),
        (lambda v: v.__setitem__("decoder/activation", torch.tensor(1, dtype=torch.int8)), "decoder/activation = 1"),
        (lambda v: v.pop("decoder/layer_1/ffn/linear_1/bias"), "decoder/layer_1/ffn/linear_1/bias is missing"),
    ],
)
def test_what_whisper_cannot_express_is_refused_by_name(small, tmp_path, change, message):
    _, variables, aliases = small
    variables = {k: t.clone() for k, t in variables.items()}
    change(variables)
    write_ct2(tmp_path / "model.bin", variables, aliases)
    with pytest.raises(cw.Ct2FormatError, match=message):
        cw.whisper_state_dict(cw.read_ct2_model([tmp_path / "model.bin"]))


def test_check_signal_is_deterministic():
    a, b = cw.check_signal(), cw.check_signal()
    assert a.shape == (3 * cw.SAMPLING_RATE,) and np.array_equal(a, b) and 0.05 < np.abs(a).max() < 1


# --------------------------------------------------------------------------------------------
# the real packages, against CTranslate2 itself

REAL_CLIPS = ["LJ002-0020.wav", "LJ002-0035.wav", "common_voice_en_651325.mp3"]
ESPEAK_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
]
MODELS = {"whisper-tiny.en": "whisper_tiny_en", "whisper-base": "whisper_base"}


@pytest.fixture(scope="module")
def ct2_models():
    """CTranslate2 (float32) on each catalogued model's own files, opened on first use."""
    pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install -e '.[pretrained]')")
    from espnet_llm_plugin.pretrained.catalog import get_spec
    from espnet_llm_plugin.pretrained.prepare import locate_source, source_parts

    opened: Dict[str, cw.Ct2Whisper] = {}

    def get(name: str) -> cw.Ct2Whisper:
        if name not in opened:
            spec = get_spec(name)
            parts = source_parts(spec, locate_source(spec)[0])
            opened[name] = cw.Ct2Whisper(parts, threads=2).__enter__()
        return opened[name]

    yield get
    for model in opened.values():
        model.__exit__(None, None, None)


def _real_clips(real_speech_dir: Path) -> List[Tuple[str, np.ndarray]]:
    from espnet_llm_plugin.fileio.audio import read_audio, resample

    clips = []
    for name in REAL_CLIPS:
        wav, sr = read_audio(str(real_speech_dir / "audio" / name))
        clips.append((name, resample(wav, sr, cw.SAMPLING_RATE)))
    return clips


def _espeak_clips() -> List[Tuple[str, np.ndarray]]:
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak
    from espnet_llm_plugin.fileio.audio import resample

    clips = []
    for i, text in enumerate(ESPEAK_SENTENCES):
        wav, sr = run_espeak(text, "en-us", 160, 50)
        clips.append((f"espeak-{i}", resample(wav, sr, cw.SAMPLING_RATE)))
    return clips


def _greedy_identity(request, name, clips, ct2_models, record_property, own_generate=False) -> None:
    model, processor = request.getfixturevalue(MODELS[name])
    ct2 = ct2_models(name)
    multilingual = bool(model.generation_config.is_multilingual)
    prompt = cw.whisper_prompt(processor.tokenizer, multilingual)
    identical, max_diff, report = 0, 0.0, []
    for clip, wav in clips:
        features = cw.log_mel(processor, wav)
        with torch.no_grad():
            encoded = model.model.encoder(features).last_hidden_state
        ct2_encoded = ct2.encode(features)
        max_diff = max(max_diff, float((ct2_encoded - encoded).abs().max()))
        hf = cw.generate_nbest(model, None, prompt, encoded=encoded)[0][0]  # each its own encoder's
        ref = ct2.generate(ct2_encoded, prompt)[0][0]
        identical += hf == ref
        report.append(f"{clip}: {processor.tokenizer.decode(hf)!r} vs {processor.tokenizer.decode(ref)!r}")
    record_property("identical", f"{identical}/{len(clips)}")
    record_property("encoder_max_abs_diff", max_diff)
    print(f"{name}: greedy identical {identical}/{len(clips)}, encoder max |diff| {max_diff:.2e}")
    assert identical == len(clips), "\n".join(report)
    assert max_diff < 5e-3, f"{name}: encoder max |diff| to CTranslate2 {max_diff:.2e}"
    if not own_generate:
        return
    # Whisper's own generate() with the written generation config decodes the same (a
    # multilingual model detects the language and transcribes)
    features = cw.log_mel(processor, clips[0][1])
    with torch.no_grad():
        own = model.generate(features)[0].tolist()
    own = [t for t in own if t < processor.tokenizer.eos_token_id]  # text tokens only
    assert own == ct2.generate(features, prompt)[0][0], f"{name}: {processor.tokenizer.decode(own)!r}"


@pytest.mark.real_model
@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_tokens_equal_ctranslate2_on_real_speech(request, name, real_speech_dir, ct2_models, record_property):
    _greedy_identity(request, name, _real_clips(real_speech_dir), ct2_models, record_property)


@pytest.mark.real_model
@pytest.mark.espeak
@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_tokens_equal_ctranslate2_on_espeak_speech(request, name, ct2_models, record_property):
    _greedy_identity(request, name, _espeak_clips(), ct2_models, record_property, own_generate=True)


@pytest.mark.real_model
@pytest.mark.espeak
@pytest.mark.parametrize("name", sorted(MODELS))
def test_five_best_equals_ctranslate2(request, name, ct2_models):
    """Beam 5, 5 hypotheses: the same hypotheses as CTranslate2, in its order once scored as
    it scores (log-probability total over the text tokens' count; ours divides by the count
    with the end token)."""
    model, processor = request.getfixturevalue(MODELS[name])
    ct2 = ct2_models(name)
    prompt = cw.whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    clip, wav = _espeak_clips()[0]
    features = cw.log_mel(processor, wav)
    hf = cw.generate_nbest(model, features, prompt, num_beams=5, num_return=5)
    ref = ct2.generate(features, prompt, num_beams=5, num_return=5)
    decode = processor.tokenizer.decode
    assert len({tuple(t) for t, _ in hf}) == 5, "beams are not distinct"
    assert {tuple(t) for t, _ in hf} == {tuple(t) for t, _ in ref}, (
        [decode(t) for t, _ in hf],
        [decode(t) for t, _ in ref],
    )
    totals = [(t, s * (len(t) + 1)) for t, s in hf]  # back to summed log-probabilities
    as_ct2 = sorted(totals, key=lambda h: -h[1] / max(len(h[0]), 1))
    assert [t for t, _ in as_ct2] == [t for t, _ in ref]
    for (tokens, total), (_, ct2_score) in zip(as_ct2, ref):
        assert total == pytest.approx(ct2_score * len(tokens), abs=0.02), decode(tokens)


@pytest.mark.real_model
def test_tokenizer_and_generation_config(whisper_tiny_en, whisper_base):
    """The timestamp tokens missing from tiny.en's tokenizer.json are added (50,363 -> 51,864),
    ids spell the vocabulary, and only the multilingual model has a language table."""
    (tiny, tiny_proc), (base, base_proc) = whisper_tiny_en, whisper_base
    tok = tiny_proc.tokenizer
    assert len(tok) == tiny.config.vocab_size == 51864
    assert tok.convert_ids_to_tokens([50256, 50257, 50362, 50363, 51863]) == [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|notimestamps|>",
        "<|0.00|>",
        "<|30.00|>",
    ]
    assert tok.decode(tok(" hello world", add_special_tokens=False).input_ids) == " hello world"
    assert not tiny.generation_config.is_multilingual
    assert getattr(tiny.generation_config, "lang_to_id", None) is None
    assert len(base_proc.tokenizer) == base.config.vocab_size == 51865
    assert base.generation_config.is_multilingual and base.generation_config.lang_to_id["<|en|>"] == 50259
    assert base.generation_config.task == "transcribe"
    assert cw.whisper_prompt(base_proc.tokenizer, True) == [50258, 50259, 50359, 50363]
    assert cw.whisper_prompt(tok, False) == [50257, 50362]
