"""CMU AN4 (alphanumeric census database): locate or download the corpus, and build the
Kaldi data directories ``train``, ``dev`` and ``test`` from it.

Layout of the official ``an4_sphere.tar.gz`` (it extracts to ``an4/``)::

    an4/etc/an4_train.transcription   <s> RUBOUT G M E F THREE NINE </s> (an251-fash-b)
    an4/etc/an4_test.transcription
    an4/etc/an4_{train,test}.fileids  an4_clstk/fash/an251-fash-b
    an4/wav/an4_clstk/<speaker>/<file>.sph       (training set)
    an4/wav/an4test_clstk/<speaker>/<file>.sph   (test set)

The id in parentheses is the audio file's name, ``<prefix>-<speaker>-<suffix>``. Our
utterance id puts the speaker first, ``<speaker>-<prefix>-<suffix>`` (``fash-an251-b``), so
that sorting by utterance id groups speakers, as Kaldi expects. The audio is 16 kHz 16-bit
NIST SPHERE, which libsndfile reads directly; ``wav.scp`` lists the ``.sph`` paths.

``dev`` is a deterministic subset of the training *speakers* (held out from ``train``), so
no dev speaker is seen in training.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile

from espnet_llm_plugin.corpus.release import (
    extracted_release,
    find_or_download,
    replace_dir,
    write_data_dirs,
)

logger = logging.getLogger(__name__)

AN4_URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
ARCHIVE_NAME = "an4_sphere.tar.gz"

#: split -> (transcription file, audio directory), relative to the ``an4/`` root
SPLITS: Dict[str, Tuple[str, str]] = {
    "train": ("etc/an4_train.transcription", "wav/an4_clstk"),
    "test": ("etc/an4_test.transcription", "wav/an4test_clstk"),
}

HOW_TO_GET = (
    f"get the corpus from {AN4_URL} (about 64 MB), extract it (it contains an4/), and set "
    "AN4=<the directory containing an4/> in db.sh (--an4_root for prepare_an4), "
    "or let the recipe download it with --download true"
)


class AN4Error(ValueError):
    """An AN4 tree, archive or transcription that cannot be used as it is."""


class AN4DownloadError(AN4Error):
    """The corpus archive could not be downloaded."""


# --------------------------------------------------------------------------- locate


def find_an4_root(path: str | Path) -> Path:
    """Return the ``an4/`` directory given it or the directory that contains it.

    Raises:
        AN4Error: naming the first missing file or directory, and how to get the corpus.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise AN4Error(f"AN4 corpus not found: {path} is not a directory; {HOW_TO_GET}")
    root = path / "an4" if (path / "an4").is_dir() else path
    for transcription, wav_dir in SPLITS.values():
        if not (root / transcription).is_file():
            raise AN4Error(f"AN4 corpus not found or incomplete: {root / transcription} is missing; {HOW_TO_GET}")
        if not (root / wav_dir).is_dir():
            raise AN4Error(f"AN4 corpus incomplete: audio directory {root / wav_dir} is missing; {HOW_TO_GET}")
    return root.resolve()


# --------------------------------------------------------------------------- parse


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # <speaker>-<prefix>-<suffix>
    speaker: str
    words: str
    sph: Path


_LINE_RE = re.compile(r"^(?P<words>.*?)\s*\((?P<file_id>[^()\s]+)\)\s*$")


def parse_transcription(path: str | Path) -> List[Tuple[str, str, int]]:
    """Read an AN4 ``.transcription`` file.

    Returns:
        ``(file_id, words, line_number)`` per non-empty line, in file order; ``words`` has
        ``<s>``/``</s>`` removed and the case kept as in the corpus (upper case).

    Raises:
        AN4Error: ``file:line`` for a line without ``(id)`` at its end, an id that is not
        ``<prefix>-<speaker>-<suffix>``, or an id seen twice.
    """
    path = Path(path)
    out: List[Tuple[str, str, int]] = []
    seen: Dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise AN4Error(f"{path}: not a UTF-8/ASCII text file ({e})") from e
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        m = _LINE_RE.match(line)
        if m is None:
            raise AN4Error(f"{path}:{lineno}: expected '<s> WORDS </s> (<prefix>-<speaker>-<suffix>)', got {line!r}")
        file_id = m.group("file_id")
        if len(file_id.split("-")) != 3 or not all(file_id.split("-")):
            raise AN4Error(
                f"{path}:{lineno}: utterance id {file_id!r} is not '<prefix>-<speaker>-<suffix>' (e.g. an251-fash-b)"
            )
        if file_id in seen:
            raise AN4Error(f"{path}:{lineno}: utterance id {file_id!r} already on line {seen[file_id]}")
        seen[file_id] = lineno
        words = [w for w in m.group("words").split() if w not in ("<s>", "</s>")]
        out.append((file_id, " ".join(words), lineno))
    if not out:
        raise AN4Error(f"{path}: no utterances (empty transcription file)")
    return out


def load_split(an4_root: str | Path, split: str) -> List[Utterance]:
    """Utterances of ``split`` ('train' or 'test'), sorted by utterance id.

    Raises:
        AN4Error: a bad transcription line, or an utterance whose ``.sph`` file is missing
        (naming the utterance and the path; the count when several are missing).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown AN4 split {split!r}; expected one of {sorted(SPLITS)}")
    root = Path(an4_root)
    transcription, wav_dir = SPLITS[split]
    utts: List[Utterance] = []
    missing: List[Tuple[str, Path, int]] = []
    for file_id, words, lineno in parse_transcription(root / transcription):
        prefix, speaker, suffix = file_id.split("-")
        sph = root / wav_dir / speaker / f"{file_id}.sph"
        utt_id = f"{speaker}-{prefix}-{suffix}"
        if not sph.is_file():
            missing.append((utt_id, sph, lineno))
            continue
        if not words:
            logger.warning("%s:%d: utterance %s has an empty transcript", root / transcription, lineno, utt_id)
        utts.append(Utterance(utt_id, speaker, words, sph))
    if missing:
        utt_id, sph, lineno = missing[0]
        more = ""
        if len(missing) > 1:
            more = f" ({len(missing) - 1} more utterances miss their audio too)"
        raise AN4Error(
            f"utterance '{utt_id}' ({root / transcription}:{lineno}): audio file {sph} is "
            f"missing{more}; the corpus is incomplete, re-extract it ({HOW_TO_GET})"
        )
    _cross_check_fileids(root, split, utts)
    return sorted(utts, key=lambda u: u.utt_id)


def _cross_check_fileids(root: Path, split: str, utts: Sequence[Utterance]) -> None:
    """Warn (only) when ``etc/an4_<split>.fileids`` disagrees with the transcription."""
    fileids = root / "etc" / f"an4_{split}.fileids"
    if not fileids.is_file():
        return
    listed = {Path(line.strip()).name for line in fileids.read_text(errors="replace").splitlines() if line.strip()}
    have = {u.sph.stem for u in utts}
    if listed != have:
        logger.warning(
            "%s lists %d files, %s has %d utterances (%d differ); using the transcription",
            fileids,
            len(listed),
            root / SPLITS[split][0],
            len(have),
            len(listed ^ have),
        )


# --------------------------------------------------------------------------- dev split


def select_dev_speakers(
    speakers: Sequence[str], dev_ratio: float = 0.1, dev_speakers: Optional[Sequence[str]] = None
) -> List[str]:
    """Pick the held-out speakers: ``dev_speakers`` if given, else ``round(n * dev_ratio)``
    (at least 1) speakers spread evenly over the sorted speaker list. AN4 speaker names start
    with their gender (``f``/``m``), so an even spread keeps both in dev. Deterministic.

    Raises:
        AN4Error: an unknown speaker in ``dev_speakers``, a ratio outside (0, 1), or a split
        that would leave no training speaker.
    """
    spk = sorted(set(speakers))
    if dev_speakers:
        chosen = sorted(set(dev_speakers))
        unknown = [s for s in chosen if s not in spk]
        if unknown:
            raise AN4Error(
                f"dev speaker(s) {', '.join(unknown)} not in the training set "
                f"(speakers: {', '.join(spk[:10])}{', ...' if len(spk) > 10 else ''})"
            )
    else:
        if not 0.0 < dev_ratio < 1.0:
            raise AN4Error(f"dev_ratio must be between 0 and 1 (exclusive), got {dev_ratio}")
        k = max(1, int(math.floor(len(spk) * dev_ratio + 0.5)))
        k = min(k, len(spk))
        chosen = sorted({spk[int((i + 0.5) * len(spk) / k)] for i in range(k)})
    if len(chosen) >= len(spk):
        raise AN4Error(
            f"holding out {len(chosen)} of {len(spk)} training speakers for dev leaves none "
            f"for training; use a smaller dev_ratio or fewer dev_speakers"
        )
    return chosen


# --------------------------------------------------------------------------- data dirs


def _check_audio(utts: Sequence[Utterance], expected_sr: int = 16000) -> None:
    other_sr: Dict[int, int] = {}
    for u in utts:
        try:
            info = soundfile.info(str(u.sph))
        except Exception as e:  # LibsndfileError / RuntimeError
            raise AN4Error(
                f"utterance '{u.utt_id}': cannot read {u.sph} with libsndfile ({e}); if the "
                f"SPHERE files are shorten-compressed, pass --sph2pipe <path to sph2pipe> so "
                f"wav.scp decodes them through it"
            ) from e
        if info.samplerate != expected_sr:
            other_sr[info.samplerate] = other_sr.get(info.samplerate, 0) + 1
    if other_sr:
        logger.warning("AN4 audio is expected at %d Hz; found %s (utterances per rate)", expected_sr, other_sr)


def prepare_an4(
    an4_root: str | Path,
    data_dir: str | Path,
    dev_ratio: float = 0.1,
    dev_speakers: Optional[Sequence[str]] = None,
    sph2pipe: Optional[str] = None,
    check_audio: bool = True,
) -> Dict[str, int]:
    """Write ``<data_dir>/{train,dev,test}`` (wav.scp, text, utt2spk, spk2utt).

    Args:
        an4_root: the ``an4/`` directory or the directory containing it.
        data_dir: where the three data directories go (each replaced atomically).
        dev_ratio: fraction of training speakers held out as ``dev``.
        dev_speakers: explicit held-out speakers (overrides ``dev_ratio``).
        sph2pipe: write ``<sph2pipe> -f wav -p -c 1 file.sph |`` into wav.scp instead of
            the ``.sph`` path (only needed for compressed SPHERE, which libsndfile can't read).
        check_audio: open every file's header with libsndfile first.

    Returns:
        utterances per data directory, e.g. ``{"train": 848, "dev": 100, "test": 130}``.

    Everything is parsed and checked before anything is written.
    """
    root = find_an4_root(an4_root)
    train_all = load_split(root, "train")
    test = load_split(root, "test")
    dev_spk = set(select_dev_speakers([u.speaker for u in train_all], dev_ratio, dev_speakers))
    sets = {
        "train": [u for u in train_all if u.speaker not in dev_spk],
        "dev": [u for u in train_all if u.speaker in dev_spk],
        "test": test,
    }
    if sph2pipe:
        if shutil.which(sph2pipe) is None:
            raise AN4Error(f"sph2pipe {sph2pipe!r} not found or not executable")
    elif check_audio:
        for utts in sets.values():
            _check_audio(utts)
    logger.info("AN4 at %s; dev speakers: %s", root, " ".join(sorted(dev_spk)))

    def wav(u: Utterance) -> str:
        return f"{sph2pipe} -f wav -p -c 1 {u.sph} |" if sph2pipe else str(u.sph)

    return write_data_dirs(data_dir, sets, wav)


# --------------------------------------------------------------------------- download


def download_an4(download_dir: str | Path, url: str = AN4_URL, timeout: float = 60.0) -> Path:
    """Make sure ``<download_dir>/an4`` holds the corpus; returns that ``an4/`` root.

    Skips whatever is already done: an extracted ``an4/`` is used as is, an existing
    ``an4_sphere.tar.gz`` is extracted without downloading. Both the archive and ``an4/``
    appear only when complete.

    Raises:
        AN4DownloadError: the download failed (with what to do offline).
        AN4Error: a damaged or unsafe archive.
    """
    download_dir = Path(download_dir)
    target = download_dir / "an4"
    if target.is_dir():
        try:
            root = find_an4_root(target)
            logger.info("AN4 already extracted at %s", root)
            return root
        except AN4Error:
            logger.warning("%s exists but is incomplete; extracting again", target)
    archive = download_dir / ARCHIVE_NAME
    db_hint = "extract it and set AN4=<the directory containing an4/> in db.sh"
    with extracted_release(url, archive, AN4Error, AN4DownloadError, db_hint, timeout) as tmp:
        if not (tmp / "an4").is_dir():
            raise AN4Error(f"{archive}: does not contain an an4/ directory; is it {url}?")
        find_an4_root(tmp / "an4")  # complete?
        replace_dir(tmp / "an4", target)
    return find_an4_root(target)


def ensure_an4(an4_root: Optional[str | Path], download: bool, download_dir: str | Path, url: str = AN4_URL) -> Path:
    """The corpus root: found at ``an4_root``, else downloaded when ``download``."""
    return find_or_download(
        an4_root,
        download,
        find_an4_root,
        lambda: download_an4(download_dir, url=url),
        AN4Error,
        f"no AN4 root given; {HOW_TO_GET}",
    )
