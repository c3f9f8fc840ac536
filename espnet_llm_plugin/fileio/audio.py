"""Read audio the way users have it: files in any libsndfile format (WAV, FLAC, MP3, OGG),
Kaldi pipe commands (``sox x.sph -t wav - |``), and segments of a longer recording.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile


class AudioError(ValueError):
    """Audio that cannot be read or does not meet a stage's requirements."""


def read_audio(
    spec: str,
    utt_id: str = "",
    begin: float = 0.0,
    end: float = -1.0,
) -> Tuple[np.ndarray, int]:
    """Read ``spec`` (a path or a command ending in ``|``) as mono float32.

    Args:
        spec: wav.scp value.
        utt_id: for error messages.
        begin, end: segment in seconds (``end=-1``: to the end).

    Returns:
        ``(T,)`` float32 samples in [-1, 1] and the sample rate.
    """
    where = f"utterance '{utt_id}' ({spec})" if utt_id else spec
    try:
        if spec.rstrip().endswith("|"):
            cmd = spec.rstrip()[:-1]
            proc = subprocess.run(cmd, shell=True, capture_output=True, check=False)
            if proc.returncode != 0:
                raise AudioError(
                    f"{where}: command failed ({proc.returncode}): "
                    f"{proc.stderr.decode(errors='replace').strip()[-300:]}"
                )
            data, sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        else:
            if not Path(spec).is_file():
                raise AudioError(f"{where}: audio file not found")
            data, sr = soundfile.read(spec, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{where}: unreadable audio: {e}") from e
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if begin > 0 or end >= 0:
        b = int(round(begin * sr))
        e = len(wav) if end < 0 else int(round(end * sr))
        if b >= len(wav):
            raise AudioError(f"{where}: segment starts at {begin}s, after the audio's end")
        wav = wav[b:e]
    if wav.size == 0:
        raise AudioError(f"{where}: audio has no samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def resample(wav: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality)."""
    if from_sr == to_sr:
        return wav
    import soxr

    return soxr.resample(wav, from_sr, to_sr, quality="HQ").astype(np.float32)


def check_sample_rate(sr: int, expected: Optional[int], where: str) -> None:
    if expected is not None and sr != expected:
        raise AudioError(
            f"{where}: sample rate is {sr} Hz, expected {expected} Hz "
            f"(resample it, or let the formatting stage do it with --resample true)"
        )
