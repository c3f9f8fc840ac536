"""Speech for the synthetic demo corpus: ``espeak-ng`` in several voices, plus noise.

One utterance is: ``espeak-ng`` reads the text in a voice (an English accent plus a voice
variant such as ``+f3`` or ``+klatt``) at a speaking rate and pitch, writing a 22.05 kHz
WAV to stdout; we resample it to 16 kHz, pad it with a little silence, add white, pink,
brown or babble-like noise at a signal-to-noise ratio, and scale it to a peak level.

Every random choice is drawn from a seed (see :func:`derive_seed`), and the choices are
recorded in a :class:`SynthParams`, which alone determines the audio: the same text and
parameters always give the same samples, whichever process makes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import soundfile

from espnet_llm_plugin.fileio.audio import resample

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`"
# English accents of espeak-ng's own voices (``espeak-ng --voices=en``; no MBROLA needed).
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
# Voice variants (espeak-ng-data/voices/!v); "" is the accent's default voice.
VARIANTS = ("", "f1", "f2", "f3", "f4", "m1", "m2", "m3", "m4", "m5", "klatt", "klatt3")
RATE_WPM = (130, 190)
PITCH = (30, 70)
SNR_DB = (10.0, 30.0)
SILENCE_S = (0.05, 0.4)  # silence before and after the speech
PEAK = (0.3, 0.9)  # final peak amplitude
SPEECH_NOISES = ("white", "pink", "brown", "babble")
SEGMENT_NOISES = SPEECH_NOISES + ("hum",)
SEGMENT_LEVEL_DBFS = (-55.0, -20.0)  # RMS level of noise-only segments
_TIMEOUT_S = 60


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed, or produced no usable audio."""


def espeak_binary() -> str:
    """Path of the ``espeak-ng`` binary; a clear error when it is not installed."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise SynthesisError(f"'{ESPEAK}' was not found on PATH: {INSTALL_HINT}")
    return path


def derive_seed(corpus_seed: int, key: str) -> int:
    """A 63-bit seed for one utterance from the corpus seed and the utterance's key.

    Uses SHA-256, so it does not depend on ``PYTHONHASHSEED``, the process or the order
    in which utterances are made.
    """
    digest = hashlib.sha256(f"{corpus_seed}/{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines one synthesised utterance besides its text."""

    accent: str
    variant: str
    rate: int
    pitch: int
    noise: str
    snr_db: Optional[float]  # None: no noise
    lead_silence: float
    trail_silence: float
    peak: float
    noise_seed: int

    @property
    def voice(self) -> str:
        """The ``espeak-ng -v`` argument, e.g. ``en-gb-x-rp+f3``."""
        return f"{self.accent}+{self.variant}" if self.variant else self.accent

    @property
    def speaker(self) -> str:
        """A speaker id safe inside Kaldi utterance ids (no ``-``), e.g. ``engbxrp_f3``."""
        return f"{self.accent.replace('-', '')}_{self.variant or 'default'}"

    def to_dict(self) -> Dict:
        return {"speaker": self.speaker, "voice": self.voice, **dataclasses.asdict(self)}


def sample_synth_params(rng: np.random.Generator) -> SynthParams:
    """Draw a voice, rate, pitch, noise and levels (values rounded as recorded)."""
    return SynthParams(
        accent=str(rng.choice(ACCENTS)),
        variant=str(rng.choice(VARIANTS)),
        rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        noise=str(rng.choice(SPEECH_NOISES)),
        snr_db=round(float(rng.uniform(*SNR_DB)), 2),
        lead_silence=round(float(rng.uniform(*SILENCE_S)), 3),
        trail_silence=round(float(rng.uniform(*SILENCE_S)), 3),
        peak=round(float(rng.uniform(*PEAK)), 3),
        noise_seed=int(rng.integers(0, 2**62)),
    )


def run_espeak(text: str, voice: str, rate: int, pitch: int, utt_id: str = "") -> Tuple[np.ndarray, int]:
    """Speak ``text`` with ``espeak-ng``; returns float32 samples and the sample rate."""
    where = f"utterance '{utt_id}'" if utt_id else f"text {text[:60]!r}"
    if not text.strip():
        raise SynthesisError(f"{where}: nothing to speak (empty text)")
    cmd = [
        espeak_binary(),
        "-v",
        voice,
        "-s",
        str(rate),
        "-p",
        str(pitch),
        "-b",
        "1",
        "--stdout",
        "--stdin",
    ]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S, check=False)
    except FileNotFoundError as e:
        raise SynthesisError(f"'{ESPEAK}' could not be run: {INSTALL_HINT}") from e
    except subprocess.TimeoutExpired as e:
        raise SynthesisError(f"{where}: {ESPEAK} took more than {_TIMEOUT_S}s") from e
    if proc.returncode != 0:
        raise SynthesisError(
            f"{where}: {' '.join(cmd)} failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[-300:]}"
        )
    try:
        data, sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad data
        raise SynthesisError(f"{where}: {ESPEAK} (voice {voice}) wrote no readable WAV: {e}") from e
    if data.shape[0] == 0 or not np.any(data):
        raise SynthesisError(f"{where}: {ESPEAK} (voice {voice}) produced silence")
    return np.ascontiguousarray(data[:, 0]), int(sr)


def active_power(wav: np.ndarray, fs: int, floor_db: float = 40.0) -> float:
    """Mean power of the 20 ms frames within ``floor_db`` of the loudest one (the speech,
    not the pauses), the level an SNR is measured against."""
    frame = max(1, int(0.02 * fs))
    n = len(wav) // frame
    if n == 0:
        return float(np.mean(wav.astype(np.float64) ** 2)) if len(wav) else 0.0
    energy = np.mean(wav[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    active = energy[energy >= energy.max() * 10 ** (-floor_db / 10)]
    return float(active.mean())


def colored_noise(kind: str, n: int, rng: np.random.Generator, fs: int = 16000) -> np.ndarray:
    """``n`` samples of unit-RMS noise: white, pink (1/f power), brown (1/f^2 power),
    babble (several speech-band noises with syllable-rate loudness changes) or hum
    (mains hum and harmonics over faint hiss)."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    # Filter a power-of-two length (fast FFT) and keep the first n samples.
    n_fft = 1 << max(1, (n - 1).bit_length())
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fs)
    if kind == "white":
        noise = rng.standard_normal(n_fft)
    elif kind in ("pink", "brown"):
        power = 1.0 if kind == "pink" else 2.0
        noise = _shaped(rng.standard_normal(n_fft), freqs, np.maximum(freqs, 20.0) ** (-power / 2))
    elif kind == "babble":
        # Each "talker" is white noise whose loudness changes at syllable rate (< 6 Hz);
        # their sum is filtered to the speech band once.
        noise = np.zeros(n_fft)
        for _ in range(int(rng.integers(4, 8))):
            noise += rng.standard_normal(n_fft) * _syllable_envelope(n_fft, rng, fs)
        band = ((freqs > 100) & (freqs < 4000)) / np.sqrt(np.maximum(freqs, 100.0))
        noise = _shaped(noise, freqs, band)
    elif kind == "hum":
        t = np.arange(n_fft) / fs
        base = float(rng.choice([50.0, 60.0]))
        noise = sum((0.6**k) * np.sin(2 * np.pi * base * (k + 1) * t + rng.uniform(0, 2 * np.pi)) for k in range(4))
        noise = noise + 0.03 * rng.standard_normal(n_fft)
    else:
        raise ValueError(f"unknown noise type {kind!r}; expected one of {', '.join(SEGMENT_NOISES)}")
    noise = noise[:n]
    rms = np.sqrt(np.mean(noise**2))
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def _syllable_envelope(n: int, rng: np.random.Generator, fs: int) -> np.ndarray:
    """A non-negative loudness curve varying below 6 Hz (made at 100 Hz, interpolated)."""
    frames = n * 100 // fs + 2
    n_env = 1 << max(1, (frames - 1).bit_length())
    env_freqs = np.fft.rfftfreq(n_env, 1.0 / 100)
    envelope = _shaped(rng.standard_normal(n_env), env_freqs, (env_freqs < 6.0).astype(float))
    envelope = np.clip(envelope / (envelope.std() + 1e-12) + 0.3, 0.0, None)
    return np.interp(np.arange(n) * 100.0 / fs, np.arange(n_env), envelope)


def _shaped(white: np.ndarray, freqs: np.ndarray, gain: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(white) * gain
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=len(white))


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, fs: int = 16000) -> np.ndarray:
    """``speech`` plus ``noise`` scaled so that active speech power / noise power = SNR."""
    if len(noise) != len(speech):
        raise ValueError(f"add_noise: {len(speech)} speech samples but {len(noise)} noise samples")
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if noise_power == 0:
        return speech.astype(np.float32)
    scale = np.sqrt(active_power(speech, fs) / (noise_power * 10 ** (snr_db / 10)))
    return (speech + scale * noise).astype(np.float32)


def synthesize(text: str, params: SynthParams, fs: int = 16000, utt_id: str = "") -> np.ndarray:
    """The audio of ``text`` spoken with ``params``: float32 at ``fs`` Hz, peak ``params.peak``."""
    raw, sr = run_espeak(text, params.voice, params.rate, params.pitch, utt_id)
    speech = resample(raw, sr, fs)
    speech = np.concatenate(
        [
            np.zeros(int(round(params.lead_silence * fs)), dtype=np.float32),
            speech.astype(np.float32),
            np.zeros(int(round(params.trail_silence * fs)), dtype=np.float32),
        ]
    )
    if params.snr_db is not None:
        noise = colored_noise(params.noise, len(speech), np.random.default_rng(params.noise_seed), fs)
        speech = add_noise(speech, noise, params.snr_db, fs)
    peak = float(np.max(np.abs(speech)))
    if peak == 0:
        where = f"utterance '{utt_id}'" if utt_id else f"text {text[:60]!r}"
        raise SynthesisError(f"{where}: synthesised audio is silent")
    return (speech * (params.peak / peak)).astype(np.float32)


def synthesize_utterance(text: str, seed: int, fs: int = 16000, utt_id: str = "") -> Tuple[np.ndarray, SynthParams]:
    """Draw parameters from ``seed`` and synthesise ``text``; returns audio and parameters."""
    params = sample_synth_params(np.random.default_rng(seed))
    return synthesize(text, params, fs, utt_id), params


def make_noise_segment(duration: float, rng: np.random.Generator, fs: int = 16000) -> Tuple[np.ndarray, Dict]:
    """A noise-only segment (no speech at all) of ``duration`` seconds.

    The noise type (white, pink, brown, babble, hum) and RMS level (-55 to -20 dBFS) are
    drawn from ``rng``. Returns float32 audio and ``{"noise", "level_dbfs", "duration"}``.
    """
    if duration <= 0:
        raise ValueError(f"make_noise_segment: duration must be positive, got {duration}")
    kind = str(rng.choice(SEGMENT_NOISES))
    level_dbfs = round(float(rng.uniform(*SEGMENT_LEVEL_DBFS)), 2)
    noise = colored_noise(kind, int(round(duration * fs)), rng, fs) * 10 ** (level_dbfs / 20)
    wav = np.clip(noise, -0.99, 0.99).astype(np.float32)
    return wav, {"noise": kind, "level_dbfs": level_dbfs, "duration": round(duration, 3)}
