"""Feature extractors: shapes, determinism, short audio, specs that rebuild the extractor."""

import numpy as np
import pytest

from espnet_llm_plugin.frontend.unit_features import (
    FeatureError,
    ShortAudioError,
    UtteranceAudio,
    build_feature_extractor,
)


def _wav(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("hop_ms", [10.0, 20.0])
def test_fbank_frames(hop_ms):
    ex = build_feature_extractor({"type": "fbank", "n_mels": 40, "hop_ms": hop_ms})
    hop = int(hop_ms * 16)
    feats = ex.extract(_wav(16000))
    assert feats.shape == (1 + (16000 - 400) // hop, 40) and feats.dtype == np.float32
    assert ex.dim == 40 and ex.min_samples == 400
    np.testing.assert_array_equal(feats, ex.extract(_wav(16000)))  # deterministic
    assert build_feature_extractor(ex.spec).spec == ex.spec


def test_fbank_batch_equals_single():
    import torch

    ex = build_feature_extractor({"type": "fbank", "n_mels": 20})
    a, b = _wav(8000, 1), _wav(5000, 2)
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5000] = torch.from_numpy(a), torch.from_numpy(b)
    feats, lens = ex.forward_batch(batch, torch.tensor([8000, 5000]))
    np.testing.assert_allclose(feats[1, : int(lens[1])].numpy(), ex.extract(b), atol=1e-4)
    np.testing.assert_allclose(feats[0, : int(lens[0])].numpy(), ex.extract(a), atol=1e-4)


def test_short_audio_names_utterance():
    ex = build_feature_extractor({"type": "fbank"})
    with pytest.raises(ShortAudioError, match="utt_short"):
        ex.extract(_wav(399), "utt_short")


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"type": "mfcc"}, "unknown type"),
        ({"n_mels": 3}, "'type'"),
        ({"type": "fbank", "bogus": 1}, "bogus"),
        ({"type": "hf", "path": "/nonexistent"}, "no config.json"),
        ({"type": "espnet_asr", "config": "/no/config.yaml", "model_file": "/no/m.pth"}, "not found"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(FeatureError, match=match):
        build_feature_extractor(spec)


def test_hf_encoder_layer(tiny_hubert_dir):
    ex = build_feature_extractor({"type": "hf", "path": str(tiny_hubert_dir), "layer": 1})
    feats = ex.extract(_wav(4000))
    # conv strides 5*2: 10 samples per frame after the receptive field
    assert feats.shape[1] == 32 and feats.shape[0] == (4000 - ex.min_samples) // 10 + 1
    np.testing.assert_array_equal(feats, ex.extract(_wav(4000)))
    with pytest.raises(ShortAudioError, match="u1"):
        ex.extract(_wav(ex.min_samples - 1), "u1")
    assert build_feature_extractor(ex.spec).spec == ex.spec


def test_espnet_asr_encoder(tiny_espnet_asr, tmp_path, monkeypatch):
    config, model_file = tiny_espnet_asr
    monkeypatch.chdir(tmp_path)  # stats_file is relative to the recipe dir: found from the config
    final = build_feature_extractor({"type": "espnet_asr", "config": str(config), "model_file": str(model_file)})
    block1 = build_feature_extractor(
        {"type": "espnet_asr", "config": str(config), "model_file": str(model_file), "layer": 1}
    )
    a, b = final.extract(_wav(16000)), block1.extract(_wav(16000))
    assert a.shape == b.shape and a.shape[1] == 16 == final.dim
    assert not np.allclose(a, b)
    with pytest.raises(ShortAudioError, match="short_one"):
        final.extract(_wav(final.min_samples - 1), "short_one")
    assert final.extract(_wav(final.min_samples)).shape[0] >= 1
    with pytest.raises(FeatureError, match="layer=5"):
        build_feature_extractor(
            {"type": "espnet_asr", "config": str(config), "model_file": str(model_file), "layer": 5}
        )


def test_utterance_audio_segments_and_duplicates(wav_dir, tmp_path):
    audio = UtteranceAudio([wav_dir])
    full = audio.read("utt00")
    seg_dir = tmp_path / "seg"
    seg_dir.mkdir()
    (seg_dir / "wav.scp").write_text((wav_dir / "wav.scp").read_text())
    (seg_dir / "segments").write_text("part utt00 0.1 0.3\n")
    seg = UtteranceAudio([seg_dir]).read("part")
    np.testing.assert_array_equal(seg, full[1600:4800])
    with pytest.raises(ValueError, match="utt00"):
        UtteranceAudio([wav_dir], [wav_dir / "wav.scp"])


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: code run by loading the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_espnet_asr_model_file_that_would_run_code_is_refused(tiny_espnet_asr, tmp_path, monkeypatch):
    import torch

    config, model_file = tiny_espnet_asr
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pth"
    state = torch.load(model_file, weights_only=True)
    state["encoder.payload"] = _WritesMarker(marker)
    torch.save(state, crafted)
    with pytest.raises(FeatureError, match=rf"{crafted}: refused to load.*GLOBAL \S*open"):
        build_feature_extractor({"type": "espnet_asr", "config": str(config), "model_file": str(crafted)})
    assert not marker.exists()


# ---------------------------------------------------------------- Whisper layers as unit features
@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=64,
        num_mel_bins=16,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    path = tmp_path_factory.mktemp("whisper")
    transformers.WhisperForConditionalGeneration(config).save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=16).save_pretrained(path)
    return path


def test_hf_type_detects_whisper(tiny_whisper_dir):
    import torch

    from espnet_llm_plugin.asr.whisper_encoder import HfWhisperEncoder

    ex = build_feature_extractor({"type": "hf", "path": str(tiny_whisper_dir), "layer": 1})
    assert isinstance(ex.encoder, HfWhisperEncoder) and ex.dim == 16 and ex.min_samples == 1
    wav = _wav(16000)
    feats = ex.extract(wav)
    assert feats.shape == (50, 16)  # 20 ms frames, not padded to 30 s
    enc = HfWhisperEncoder(model_path=str(tiny_whisper_dir), layer=1, finetune="frozen").eval()
    with torch.no_grad():
        expected = enc(torch.from_numpy(wav)[None], torch.tensor([16000]))[0][0].numpy()
    np.testing.assert_allclose(feats, expected, atol=1e-6)
    assert ex.spec["final_layer_norm"] is False  # an intermediate layer: as HF's hidden_states
    assert build_feature_extractor(ex.spec).spec == ex.spec
    last = build_feature_extractor({"type": "hf", "path": str(tiny_whisper_dir)})
    assert last.spec["final_layer_norm"] is True  # the encoder's output
    assert not np.allclose(last.extract(wav), feats)
    assert ex.extract(_wav(1)).shape == (1, 16)


def test_whisper_features_of_audio_longer_than_30s(tiny_whisper_dir):
    ex = build_feature_extractor({"type": "hf", "path": str(tiny_whisper_dir), "layer": 2})
    wav = _wav(31 * 16000 + 500, seed=4)
    feats = ex.extract(wav, "long_utt")
    assert feats.shape == (1500 + 52, 16)  # 30 s piece + 1.03 s piece, on one 20 ms grid
    np.testing.assert_allclose(feats[:1500], ex.extract(wav[: 30 * 16000]), atol=1e-5)
    np.testing.assert_allclose(feats[1500:], ex.extract(wav[30 * 16000 :]), atol=1e-5)
