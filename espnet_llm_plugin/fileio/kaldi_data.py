"""Kaldi-style data directories: ``wav.scp``, ``text``, ``utt2spk`` (+ optional ``segments``).

Every error names the file and, where there is one, the line and utterance id. Files must be
UTF-8 (Kaldi's and ESPnet's convention); another encoding is an error naming the line. Ids are
shown with ``repr`` so an invisible character (a byte-order mark, a non-breaking space) shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_llm_plugin.fileio.atomic import atomic_file


class DataDirError(ValueError):
    """A data directory that a recipe stage cannot use as it is."""


def read_scp(path: str | Path, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read ``key value...`` lines into an ordered dict.

    Args:
        path: the file.
        allow_empty_value: accept ``key`` alone on a line (an empty transcript in ``text``).

    Raises:
        DataDirError: missing file, a line that is not UTF-8, duplicate key, or a line without
            a value.
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    out: Dict[str, str] = {}
    with open(path, "rb") as f:  # bytes: a decoding error can name its line
        for lineno, raw_bytes in enumerate(f, 1):
            raw = _decode_line(raw_bytes, path, lineno)
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataDirError(f"{path}:{lineno}: utterance '{key}' has no value")
            if key in out:
                raise DataDirError(f"{path}:{lineno}: duplicate key {key!r}")
            out[key] = value
    return out


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataDirError(
            f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
            f"Kaldi data files must be UTF-8: convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def write_scp(path: str | Path, entries: Iterable[Tuple[str, str]]) -> None:
    """Write ``key value`` lines atomically, sorted by key (Kaldi's sort order)."""
    rows = sorted(entries, key=lambda kv: kv[0])
    with atomic_file(path) as f:
        for key, value in rows:
            if not key or any(c.isspace() for c in key):
                raise DataDirError(f"{path}: invalid key {key!r} (keys must not contain spaces)")
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


@dataclass
class DataDir:
    """An in-memory Kaldi data directory."""

    wav_scp: Dict[str, str]
    text: Optional[Dict[str, str]] = None
    utt2spk: Dict[str, str] = field(default_factory=dict)
    segments: Optional[Dict[str, Tuple[str, float, float]]] = None

    @property
    def utt_ids(self) -> List[str]:
        return sorted(self.segments) if self.segments is not None else sorted(self.wav_scp)

    def audio_source(self, utt: str) -> Tuple[str, float, float]:
        """``(wav.scp value, begin s, end s)`` of an utterance (``end=-1``: to the end)."""
        if self.segments is not None:
            reco, begin, end = self.segments[utt]
            return self.wav_scp[reco], begin, end
        return self.wav_scp[utt], 0.0, -1.0

    def write(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_scp(path / "wav.scp", self.wav_scp.items())
        if self.text is not None:
            write_scp(path / "text", self.text.items())
        utt2spk = self.utt2spk or {u: u for u in self.utt_ids}
        write_scp(path / "utt2spk", utt2spk.items())
        spk2utt: Dict[str, List[str]] = {}
        for utt, spk in sorted(utt2spk.items()):
            spk2utt.setdefault(spk, []).append(utt)
        write_scp(path / "spk2utt", ((s, " ".join(u)) for s, u in spk2utt.items()))
        if self.segments is not None:
            write_scp(
                path / "segments",
                ((u, f"{r} {b:.3f} {e:.3f}") for u, (r, b, e) in self.segments.items()),
            )


def _read_segments(path: Path) -> Dict[str, Tuple[str, float, float]]:
    out = {}
    for utt, value in read_scp(path).items():
        parts = value.split()
        try:
            reco, begin, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise DataDirError(f"{path}: utterance '{utt}': expected 'reco begin end', got {value!r}")
        if not (math.isfinite(begin) and math.isfinite(end)):
            raise DataDirError(f"{path}: segment {utt!r}: begin {begin} and end {end} must be finite")
        if begin < 0:  # a negative start would index from the recording's end
            raise DataDirError(f"{path}: segment {utt!r}: begin {begin} is negative")
        if end < 0 and end != -1:
            raise DataDirError(f"{path}: segment {utt!r}: end {end} is negative (-1 means: to the end)")
        if end != -1 and end <= begin:
            raise DataDirError(f"{path}: utterance '{utt}': end {end} is not after begin {begin}")
        out[utt] = (reco, begin, end)
    return out


def load_data_dir(path: str | Path, require_text: bool = True) -> DataDir:
    """Read and cross-check a data directory.

    Checks: files present, no duplicate ids, the same utterance ids in ``wav.scp`` (or
    ``segments``), ``text`` and ``utt2spk``. Empty transcripts are valid (non-speech
    segments); a missing ``text`` file is an error when ``require_text``.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: data directory not found")
    wav_scp = read_scp(path / "wav.scp")
    if not wav_scp:
        raise DataDirError(f"{path / 'wav.scp'}: no utterances")
    segments = _read_segments(path / "segments") if (path / "segments").exists() else None
    if segments is not None:
        for utt, (reco, _, _) in segments.items():
            if reco not in wav_scp:
                raise DataDirError(
                    f"{path / 'segments'}: utterance '{utt}' refers to recording '{reco}' "
                    f"that is not in {path / 'wav.scp'}"
                )
    ids = set(segments) if segments is not None else set(wav_scp)
    id_source = path / ("segments" if segments is not None else "wav.scp")
    text = None
    if (path / "text").exists():
        text = read_scp(path / "text", allow_empty_value=True)
        if not text:
            raise DataDirError(f"{path / 'text'}: the transcript file is empty")
        _same_ids(id_source, ids, path / "text", set(text))
    elif require_text:
        raise DataDirError(f"{path / 'text'}: transcript file not found")
    utt2spk = {}
    if (path / "utt2spk").exists():
        utt2spk = read_scp(path / "utt2spk")
        _same_ids(id_source, ids, path / "utt2spk", set(utt2spk))
    return DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk, segments=segments)


def _same_ids(a_path: Path, a: set, b_path: Path, b: set) -> None:
    """Both sets equal, else an error naming an example of each side (``repr``: an invisible
    byte-order mark or odd space in an id shows)."""
    only_a, only_b = sorted(a - b), sorted(b - a)
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {a_path} (e.g. {only_a[0]!r})")
        if only_b:
            parts.append(f"{len(only_b)} only in {b_path} (e.g. {only_b[0]!r})")
        msg = "utterance ids differ: " + "; ".join(parts)
        if any(u.startswith("\ufeff") for u in only_a + only_b):
            msg += " ('\\ufeff' is a byte-order mark at the start of a file: save it as UTF-8 without BOM)"
        raise DataDirError(msg)
