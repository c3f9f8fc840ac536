"""LibriSpeech (read English audiobooks, OpenSLR 12): locate or download the corpus and build
the Kaldi data directories from its official layout.

Each subset archive ``<subset>.tar.gz`` from https://www.openslr.org/resources/12/ extracts to
``LibriSpeech/<subset>/``::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

A ``.trans.txt`` line is ``<speaker>-<chapter>-<utt> WORDS IN UPPER CASE``. The utterance id
already starts with the speaker, so it is used as is. Data directories are named with
underscores (``train_clean_100``, ``dev_clean``, ...), as in Kaldi/ESPnet LibriSpeech recipes;
the training set is ``train_clean_100`` (100 h) or ``train_960`` (all three training subsets).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_llm_plugin.corpus.release import (
    extracted_release,
    find_or_download,
    open_first_audio,
    replace_dir,
    write_data_dirs,
)

logger = logging.getLogger(__name__)

BASE_URL = "https://www.openslr.org/resources/12"
TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
EVAL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
SUBSETS = TRAIN_SUBSETS + EVAL_SUBSETS

#: --train_hours -> subsets making up the training set, and its data directory name
TRAIN_SETS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "100": (("train-clean-100",), "train_clean_100"),
    "960": (TRAIN_SUBSETS, "train_960"),
}

HOW_TO_GET = (
    f"download the subsets from {BASE_URL}/<subset>.tar.gz (e.g. {BASE_URL}/dev-clean.tar.gz), "
    "extract them into one directory (they extract to LibriSpeech/<subset>/), and set "
    "LIBRISPEECH=<the directory containing LibriSpeech/> in db.sh (--librispeech_root for "
    "prepare_librispeech), or let the recipe download them with --download true"
)


class LibriSpeechError(ValueError):
    """A LibriSpeech tree or transcript that cannot be used as it is."""


class LibriSpeechDownloadError(LibriSpeechError):
    """A subset archive could not be downloaded."""


def subset_url(subset: str, base_url: str = BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{subset}.tar.gz"


def data_dir_name(subset: str) -> str:
    """``dev-clean`` -> ``dev_clean`` (Kaldi/ESPnet naming)."""
    return subset.replace("-", "_")


def subsets_for(train_hours: str) -> List[str]:
    """All subsets needed for ``train_hours`` ('100' or '960'): training subsets + dev/test."""
    if train_hours not in TRAIN_SETS:
        raise LibriSpeechError(
            f"train_hours must be one of {sorted(TRAIN_SETS)} (100 h: train-clean-100; "
            f"960 h: all training subsets), got {train_hours!r}"
        )
    return list(TRAIN_SETS[train_hours][0]) + list(EVAL_SUBSETS)


# --------------------------------------------------------------------------- locate


def find_librispeech_root(path: str | Path, subsets: Sequence[str]) -> Path:
    """Return the ``LibriSpeech/`` directory given it or the directory that contains it, after
    checking that every subset in ``subsets`` is there.

    Raises:
        LibriSpeechError: naming the missing directory and how to get it.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise LibriSpeechError(f"LibriSpeech not found: {path} is not a directory; {HOW_TO_GET}")
    root = path / "LibriSpeech" if (path / "LibriSpeech").is_dir() else path
    for subset in subsets:
        if subset not in SUBSETS:
            raise LibriSpeechError(f"unknown LibriSpeech subset {subset!r}; expected one of {SUBSETS}")
        d = root / subset
        if not d.is_dir():
            raise LibriSpeechError(
                f"LibriSpeech incomplete: subset directory {d} is missing (from {subset_url(subset)}); {HOW_TO_GET}"
            )
        if not any(d.iterdir()):
            raise LibriSpeechError(f"LibriSpeech incomplete: {d} is empty; {HOW_TO_GET}")
    return root.resolve()


# --------------------------------------------------------------------------- parse


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # <speaker>-<chapter>-<utt>
    speaker: str
    words: str
    flac: Path


_ID_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def parse_trans(path: str | Path) -> List[Tuple[str, str, int]]:
    """Read a ``<speaker>-<chapter>.trans.txt``: ``(utt_id, words, line_number)`` per line.

    Raises:
        LibriSpeechError: ``file:line`` for a line whose id is not ``<speaker>-<chapter>-<n>`` of
        this file's speaker and chapter, a line without words, or an id seen twice.
    """
    path = Path(path)
    prefix = path.name[: -len(".trans.txt")]
    out: List[Tuple[str, str, int]] = []
    seen: Dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        utt = parts[0]
        m = _ID_RE.match(utt)
        if m is None or f"{m.group(1)}-{m.group(2)}" != prefix:
            raise LibriSpeechError(f"{path}:{lineno}: expected '{prefix}-<n> WORDS', got {line[:80]!r}")
        if len(parts) < 2:
            raise LibriSpeechError(f"{path}:{lineno}: utterance '{utt}' has no transcript")
        if utt in seen:
            raise LibriSpeechError(f"{path}:{lineno}: utterance '{utt}' already on line {seen[utt]}")
        seen[utt] = lineno
        out.append((utt, " ".join(parts[1].split()), lineno))
    return out


def load_subset(root: str | Path, subset: str) -> List[Utterance]:
    """All utterances of one subset, sorted by id.

    Raises:
        LibriSpeechError: no transcripts, a bad transcript line, or a missing ``.flac``
        (naming the utterance, the file, and how many more are missing).
    """
    d = Path(root) / subset
    trans_files = sorted(d.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise LibriSpeechError(
            f"LibriSpeech incomplete: no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt under {d}; {HOW_TO_GET}"
        )
    utts: List[Utterance] = []
    missing: List[Tuple[str, Path]] = []
    for trans in trans_files:
        spk, chapter = trans.parent.parent.name, trans.parent.name
        if trans.name != f"{spk}-{chapter}.trans.txt":
            raise LibriSpeechError(f"{trans}: expected the name {spk}-{chapter}.trans.txt in {trans.parent}")
        for utt, words, _ in parse_trans(trans):
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                missing.append((utt, flac))
                continue
            utts.append(Utterance(utt, spk, words, flac.resolve()))
    if missing:
        utt, flac = missing[0]
        more = f" ({len(missing) - 1} more utterances miss their audio too)" if len(missing) > 1 else ""
        raise LibriSpeechError(
            f"utterance '{utt}': audio file {flac} is missing{more}; the subset {subset} is "
            f"incomplete, re-extract {subset_url(subset)}"
        )
    return sorted(utts, key=lambda u: u.utt_id)


# --------------------------------------------------------------------------- data dirs


def prepare_librispeech(
    librispeech_root: str | Path,
    data_dir: str | Path,
    train_hours: str = "100",
    check_audio: bool = True,
) -> Dict[str, int]:
    """Write ``<data_dir>/<train set>`` and ``dev_clean``, ``dev_other``, ``test_clean``,
    ``test_other`` (wav.scp with ``.flac`` paths, text, utt2spk, spk2utt).

    Args:
        librispeech_root: ``LibriSpeech/`` or the directory that contains it.
        data_dir: output parent; each data directory is replaced atomically.
        train_hours: '100' -> ``train_clean_100``; '960' -> ``train_960`` (all training subsets).
        check_audio: open the first file of every subset with libsndfile.

    Returns:
        utterances per data directory. Everything is read and checked before writing.
    """
    subsets = subsets_for(train_hours)
    root = find_librispeech_root(librispeech_root, subsets)
    train_subsets, train_name = TRAIN_SETS[train_hours]
    loaded = {s: load_subset(root, s) for s in subsets}
    if check_audio:
        rates = open_first_audio(loaded, lambda u: u.flac, LibriSpeechError)
        for s, rate in rates.items():
            if rate != 16000:
                logger.warning("%s: %d Hz, LibriSpeech is 16 kHz", loaded[s][0].flac, rate)
    sets: Dict[str, List[Utterance]] = {
        train_name: sorted((u for s in train_subsets for u in loaded[s]), key=lambda u: u.utt_id)
    }
    for s in EVAL_SUBSETS:
        sets[data_dir_name(s)] = loaded[s]
    return write_data_dirs(data_dir, sets, lambda u: str(u.flac))


# --------------------------------------------------------------------------- download


def download_librispeech(
    download_dir: str | Path,
    subsets: Sequence[str],
    base_url: str = BASE_URL,
    timeout: float = 60.0,
) -> Path:
    """Make sure ``<download_dir>/LibriSpeech/<subset>`` exists for each subset; returns the
    ``LibriSpeech/`` root. A subset already extracted is skipped; an archive already downloaded
    is extracted without downloading. Each subset directory appears only when complete.

    Raises:
        LibriSpeechDownloadError: naming the URL (and what to do offline).
        LibriSpeechError: a damaged or unsafe archive.
    """
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    target_root = download_dir / "LibriSpeech"
    for subset in subsets:
        target = target_root / subset
        if target.is_dir() and any(target.iterdir()):
            logger.info("%s already extracted", target)
            continue
        url = subset_url(subset, base_url)
        archive = download_dir / f"{subset}.tar.gz"
        db_hint = "extract it and set LIBRISPEECH=<the directory containing LibriSpeech/> in db.sh"
        with extracted_release(url, archive, LibriSpeechError, LibriSpeechDownloadError, db_hint, timeout) as tmp:
            extracted = tmp / "LibriSpeech" / subset
            if not extracted.is_dir():
                raise LibriSpeechError(f"{archive}: does not contain LibriSpeech/{subset}/; is it {url}?")
            replace_dir(extracted, target)
            for extra in (tmp / "LibriSpeech").iterdir():  # README, SPEAKERS.TXT, ...
                if extra.is_file() and not (target_root / extra.name).exists():
                    os.replace(extra, target_root / extra.name)
    return find_librispeech_root(target_root, subsets)


def ensure_librispeech(
    librispeech_root: Optional[str | Path],
    subsets: Sequence[str],
    download: bool,
    download_dir: str | Path,
    base_url: str = BASE_URL,
) -> Path:
    """The corpus root: found at ``librispeech_root``, else downloaded when ``download``."""
    return find_or_download(
        librispeech_root,
        download,
        lambda root: find_librispeech_root(root, subsets),
        lambda: download_librispeech(download_dir, subsets, base_url=base_url),
        LibriSpeechError,
        f"no LibriSpeech root given; {HOW_TO_GET}",
    )
