"""Read audio the way users have it: files in any libsndfile format (WAV, FLAC, MP3, OGG),
Kaldi pipe commands (``sox x.sph -t wav - |``), and segments of a longer recording.

A WAV file whose header promises more samples than the file holds (a copy cut short) is an
error naming the file: libsndfile would silently read the part that is there. A segment must
start at or after 0 s (a negative start would index from the end of the recording).
"""

from __future__ import annotations

import io
import logging
import struct
import subprocess
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile

logger = logging.getLogger(__name__)


class AudioError(ValueError):
    """Audio that cannot be read or does not meet a stage's requirements."""


# data-chunk sizes a streaming writer puts in a header it cannot go back to fix
_STREAMED_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def check_wav_complete(path: str | Path, where: str = "") -> None:
    """Raise :class:`AudioError` when ``path`` is a RIFF/WAVE file whose ``data`` chunk is
    declared longer than the bytes the file holds (truncated); other formats pass."""
    path = Path(path)
    where = where or str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                if chunk_size not in _STREAMED_SIZES and chunk_size > available:
                    raise AudioError(
                        f"{where}: truncated WAV: the header declares {chunk_size} bytes of samples, "
                        f"the file holds {available} ({available / chunk_size:.0%}); copy it again"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    raise AudioError(f"{where}: truncated WAV: no complete 'data' chunk in {size} bytes")


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
            check_wav_complete(spec, where)
            data, sr = soundfile.read(spec, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{where}: unreadable audio: {e}") from e
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if begin < 0 or (end < 0 and end != -1):  # numpy would index from the end
        raise AudioError(f"{where}: segment {begin}s to {end}s: a negative time (-1 as end: to the end)")
    if begin > 0 or end >= 0:
        b = int(round(begin * sr))
        e = len(wav) if end < 0 else int(round(end * sr))
        if b >= len(wav):
            raise AudioError(f"{where}: segment starts at {begin}s, after the audio's end")
        wav = wav[b:e]
    if wav.size == 0:
        raise AudioError(f"{where}: audio has no samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def check_duration(
    seconds: float, where: str, min_duration: float = 0.0, max_duration: float = 0.0, too_long: str = "warn"
) -> None:
    """Refuse audio shorter than ``min_duration`` seconds (the encoder's subsampling leaves
    no frame: decoding crashes); longer than ``max_duration`` (0: no limit) is a warning, or an
    error with ``too_long="error"``. Messages name ``where`` (file, utterance id)."""
    if min_duration > 0 and seconds < min_duration:
        raise AudioError(
            f"{where}: {seconds * 1000:.0f} ms of audio, shorter than the minimum {min_duration:g} s (min_duration)"
        )
    if max_duration > 0 and seconds > max_duration:
        msg = (
            f"{where}: {seconds:.1f} s of audio, longer than the maximum {max_duration:g} s "
            f"(max_duration): split it into segments"
        )
        if too_long == "error":
            raise AudioError(msg)
        logger.warning("%s", msg)


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
