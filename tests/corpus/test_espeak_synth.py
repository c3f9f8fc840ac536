"""espeak-ng synthesis and noise for the synthetic corpus."""

import dataclasses

import numpy as np
import pytest

from espnet_llm_plugin.corpus import espeak_synth
from espnet_llm_plugin.corpus.espeak_synth import (
    SynthesisError,
    active_power,
    add_noise,
    colored_noise,
    derive_seed,
    make_noise_segment,
    run_espeak,
    sample_synth_params,
    synthesize,
    synthesize_utterance,
)

FS = 16000
TEXT = "please give me the red bag tomorrow morning"


def _measured_snr(noisy: np.ndarray, clean: np.ndarray) -> float:
    """SNR of ``noisy`` given the clean speech it contains at an unknown gain."""
    gain = float(np.dot(noisy, clean) / np.dot(clean, clean))
    residual = noisy - gain * clean
    return 10 * np.log10(active_power(gain * clean, FS) / np.mean(residual.astype(np.float64) ** 2))


def test_derive_seed():
    assert derive_seed(0, "train-00001") == derive_seed(0, "train-00001")
    assert derive_seed(0, "train-00001") != derive_seed(0, "train-00002")
    assert derive_seed(0, "train-00001") != derive_seed(1, "train-00001")
    assert 0 <= derive_seed(123, "x") < 2**63


def test_sample_params_ranges_and_speaker_ids():
    params = [sample_synth_params(np.random.default_rng(i)) for i in range(300)]
    assert len({p.speaker for p in params}) > 40
    for p in params:
        assert 130 <= p.rate <= 190 and 30 <= p.pitch <= 70 and 10 <= p.snr_db <= 30
        assert "-" not in p.speaker and " " not in p.speaker
        assert p.voice.startswith(p.accent)
    assert {p.noise for p in params} == {"white", "pink", "brown", "babble"}
    d = params[0].to_dict()
    assert {"voice", "speaker", "rate", "pitch", "snr_db", "noise"} <= set(d)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble", "hum"])
def test_colored_noise_unit_rms(kind):
    noise = colored_noise(kind, 12345, np.random.default_rng(0))
    assert noise.dtype == np.float32 and noise.shape == (12345,)
    assert abs(np.sqrt(np.mean(noise.astype(np.float64) ** 2)) - 1.0) < 1e-3
    assert np.array_equal(noise, colored_noise(kind, 12345, np.random.default_rng(0)))


def test_colored_noise_spectra_differ():
    def low_share(kind):
        spectrum = np.abs(np.fft.rfft(colored_noise(kind, 32000, np.random.default_rng(1)))) ** 2
        freqs = np.fft.rfftfreq(32000, 1 / FS)
        return spectrum[freqs < 500].sum() / spectrum.sum()

    white, pink, brown = low_share("white"), low_share("pink"), low_share("brown")
    assert white < 0.1 < pink < brown
    with pytest.raises(ValueError, match="unknown noise type 'purple'"):
        colored_noise("purple", 100, np.random.default_rng(0))


def test_add_noise_honours_snr_without_espeak():
    t = np.arange(FS) / FS
    speech = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    speech[: FS // 4] = 0  # a pause must not lower the speech level
    noise = colored_noise("pink", FS, np.random.default_rng(0))
    for snr in (10.0, 20.0, 30.0):
        mixed = add_noise(speech, noise, snr, FS)
        measured = 10 * np.log10(active_power(speech, FS) / np.mean((mixed - speech).astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.05


def test_noise_segment():
    wav, info = make_noise_segment(1.5, np.random.default_rng(7))
    assert wav.dtype == np.float32 and len(wav) == int(1.5 * FS)
    assert np.max(np.abs(wav)) < 1.0
    level = 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    assert abs(level - info["level_dbfs"]) < 0.1
    assert -55 <= info["level_dbfs"] <= -20
    again, info2 = make_noise_segment(1.5, np.random.default_rng(7))
    assert np.array_equal(wav, again) and info == info2
    kinds = {make_noise_segment(0.2, np.random.default_rng(i))[1]["noise"] for i in range(40)}
    assert kinds == {"white", "pink", "brown", "babble", "hum"}
    with pytest.raises(ValueError):
        make_noise_segment(0, np.random.default_rng(0))


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(espeak_synth.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match="espeak-ng.*apt-get install espeak-ng"):
        run_espeak("hello", "en-us", 160, 50)


@pytest.mark.espeak
def test_synthesize_utterance_shape_and_determinism():
    wav, params = synthesize_utterance(TEXT, seed=11, utt_id="u1")
    assert wav.dtype == np.float32 and wav.ndim == 1
    seconds = len(wav) / FS
    assert 1.2 < seconds < 6.0, seconds  # 8 words at 130-190 wpm plus padding
    assert abs(float(np.max(np.abs(wav))) - params.peak) < 1e-5
    again, params_again = synthesize_utterance(TEXT, seed=11)
    assert params == params_again and np.array_equal(wav, again)
    other, other_params = synthesize_utterance(TEXT, seed=12)
    assert other_params != params
    assert len(other) != len(wav) or not np.array_equal(other, wav)


@pytest.mark.espeak
def test_rate_changes_duration():
    base = sample_synth_params(np.random.default_rng(0))
    slow = synthesize(TEXT, dataclasses.replace(base, rate=130, snr_db=None, lead_silence=0, trail_silence=0))
    fast = synthesize(TEXT, dataclasses.replace(base, rate=190, snr_db=None, lead_silence=0, trail_silence=0))
    assert len(slow) > 1.25 * len(fast)


@pytest.mark.espeak
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_snr_is_honoured(seed):
    params = sample_synth_params(np.random.default_rng(seed))
    noisy = synthesize(TEXT, params)
    clean = synthesize(TEXT, dataclasses.replace(params, snr_db=None))
    assert len(noisy) == len(clean)
    assert abs(_measured_snr(noisy, clean) - params.snr_db) < 1.0
    louder = synthesize(TEXT, dataclasses.replace(params, snr_db=params.snr_db - 10))
    assert _measured_snr(louder, clean) < params.snr_db - 8


@pytest.mark.espeak
def test_espeak_errors_name_the_utterance():
    with pytest.raises(SynthesisError, match="utterance 'u9'.*failed"):
        run_espeak("hello", "xx-no-such-voice", 160, 50, utt_id="u9")
    with pytest.raises(SynthesisError, match="utterance 'u8': nothing to speak"):
        run_espeak("   ", "en-us", 160, 50, utt_id="u8")
