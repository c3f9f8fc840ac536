"""SLUE-VoxPopuli (European Parliament speech with ASR + NER labels, arXiv 2111.10367): locate
or download the corpus and build Kaldi data directories and a text domain memory from it.

The official ``slue-voxpopuli_blind.tar.gz`` (https://papers-slue.awsdev.asapp.com/) extracts
to ``slue-voxpopuli/``::

    slue-voxpopuli/slue-voxpopuli_fine-tune.tsv
    slue-voxpopuli/slue-voxpopuli_dev.tsv
    slue-voxpopuli/slue-voxpopuli_test_blind.tsv     (no transcripts: blind test set)
    slue-voxpopuli/{fine-tune,dev,test}/<id>.ogg

The manifests are tab-separated with a header ``id raw_text normalized_text speaker_id split
raw_ner normalized_ner``. Transcripts are ``normalized_text`` with ``. ; ? !`` removed, as the
SLUE toolkit scores ASR. Utterance ids are ``<speaker_id>-<id>`` so that sorting groups
speakers. Sets: ``train`` (fine-tune minus held-out speakers), ``valid`` (those speakers, for
model selection), ``dev`` (the official dev set, where SLUE reports results), and ``test`` only
when a labelled ``slue-voxpopuli_test.tsv`` is present (the public release is blind).

``data/local/passages.jsonl`` (``id``, ``text``: the fine-tune transcripts) is the text domain
memory for retrieval (``retrieve_passages --passages``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_llm_plugin.corpus.release import (
    extracted_release,
    find_or_download,
    open_first_audio,
    replace_dir,
    write_data_dirs,
)
from espnet_llm_plugin.fileio.atomic import atomic_file

logger = logging.getLogger(__name__)

SLUE_VOXPOPULI_URL = "https://papers-slue.awsdev.asapp.com/slue-voxpopuli_blind.tar.gz"
ARCHIVE_NAME = "slue-voxpopuli_blind.tar.gz"
REQUIRED_COLUMNS = ("id", "normalized_text", "speaker_id")

#: official split -> (manifest, audio directory), relative to slue-voxpopuli/
SPLITS = {
    "fine-tune": ("slue-voxpopuli_fine-tune.tsv", "fine-tune"),
    "dev": ("slue-voxpopuli_dev.tsv", "dev"),
}
LABELLED_TEST = ("slue-voxpopuli_test.tsv", "test")

HOW_TO_GET = (
    f"get the corpus from {SLUE_VOXPOPULI_URL}, extract it (it contains "
    "slue-voxpopuli/), and set SLUE_VOXPOPULI=<the directory containing slue-voxpopuli/> in "
    "db.sh (--slue_root for prepare_slue_voxpopuli), or let the recipe download it with "
    "--download true"
)


class SlueVoxPopuliError(ValueError):
    """A SLUE-VoxPopuli tree or manifest that cannot be used as it is."""


class SlueVoxPopuliDownloadError(SlueVoxPopuliError):
    """The corpus archive could not be downloaded."""


def find_slue_root(path: str | Path) -> Path:
    """Return ``slue-voxpopuli/`` given it or the directory containing it.

    Raises:
        SlueVoxPopuliError: naming the first missing manifest or audio directory.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise SlueVoxPopuliError(f"SLUE-VoxPopuli not found: {path} is not a directory; {HOW_TO_GET}")
    root = path / "slue-voxpopuli" if (path / "slue-voxpopuli").is_dir() else path
    for manifest, audio in SPLITS.values():
        if not (root / manifest).is_file():
            raise SlueVoxPopuliError(
                f"SLUE-VoxPopuli not found or incomplete: {root / manifest} is missing; {HOW_TO_GET}"
            )
        if not (root / audio).is_dir():
            raise SlueVoxPopuliError(
                f"SLUE-VoxPopuli incomplete: audio directory {root / audio} is missing; {HOW_TO_GET}"
            )
    return root.resolve()


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # <speaker>-<id>
    speaker: str
    words: str
    audio: Path


def normalize_transcript(text: str) -> str:
    """SLUE's ASR reference: ``normalized_text`` without ``. ; ? !``, single spaces."""
    return " ".join(re.sub(r"[.;?!]", "", text).split())


def load_split(root: str | Path, manifest: str, audio_dir: str) -> List[Utterance]:
    """Utterances of one manifest, sorted by utterance id.

    Raises:
        SlueVoxPopuliError: a missing column, an empty id, a duplicate id, or missing audio
        (``file:line`` and utterance named).
    """
    root = Path(root)
    path = root / manifest
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing_cols = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise SlueVoxPopuliError(
                f"{path}: missing column(s) {', '.join(missing_cols)} (header: {reader.fieldnames}); "
                f"expected the official manifest with {', '.join(REQUIRED_COLUMNS)}"
            )
        utts: List[Utterance] = []
        seen: Dict[str, int] = {}
        missing = []
        for row in reader:
            lineno = reader.line_num
            rid = (row.get("id") or "").strip()
            if not rid or any(c.isspace() for c in rid):
                raise SlueVoxPopuliError(f"{path}:{lineno}: bad or empty id {rid!r}")
            if rid in seen:
                raise SlueVoxPopuliError(f"{path}:{lineno}: id '{rid}' already on line {seen[rid]}")
            seen[rid] = lineno
            spk = (row.get("speaker_id") or "").strip() or "unknown"
            spk = re.sub(r"\s+", "_", spk)
            audio = root / audio_dir / f"{rid}.ogg"
            utt_id = f"{spk}-{rid}"
            if not audio.is_file():
                missing.append((rid, audio, lineno))
                continue
            utts.append(Utterance(utt_id, spk, normalize_transcript(row.get("normalized_text") or ""), audio.resolve()))
    if not seen:
        raise SlueVoxPopuliError(f"{path}: no utterances")
    if missing:
        rid, audio, lineno = missing[0]
        more = f" ({len(missing) - 1} more utterances miss their audio too)" if len(missing) > 1 else ""
        raise SlueVoxPopuliError(
            f"utterance '{rid}' ({path}:{lineno}): audio file {audio} is missing{more}; the corpus "
            f"is incomplete ({HOW_TO_GET})"
        )
    return sorted(utts, key=lambda u: u.utt_id)


def select_valid_speakers(speakers: Sequence[str], valid_ratio: float) -> List[str]:
    """``round(n * valid_ratio)`` (at least 1) speakers spread evenly over the sorted list."""
    spk = sorted(set(speakers))
    if not 0.0 < valid_ratio < 1.0:
        raise SlueVoxPopuliError(f"valid_ratio must be between 0 and 1 (exclusive), got {valid_ratio}")
    k = min(len(spk), max(1, int(math.floor(len(spk) * valid_ratio + 0.5))))
    chosen = sorted({spk[int((i + 0.5) * len(spk) / k)] for i in range(k)})
    if len(chosen) >= len(spk):
        raise SlueVoxPopuliError(f"holding out {len(chosen)} of {len(spk)} fine-tune speakers leaves none for training")
    return chosen


def prepare_slue_voxpopuli(
    slue_root: str | Path,
    data_dir: str | Path,
    valid_ratio: float = 0.05,
    check_audio: bool = True,
) -> Dict[str, int]:
    """Write ``<data_dir>/{train,valid,dev[,test]}`` and ``<data_dir>/local/passages.jsonl``.

    Returns:
        utterances per data directory. Everything is read and checked before writing.
    """
    root = find_slue_root(slue_root)
    fine_tune = load_split(root, *SPLITS["fine-tune"])
    valid_spk = set(select_valid_speakers([u.speaker for u in fine_tune], valid_ratio))
    sets = {
        "train": [u for u in fine_tune if u.speaker not in valid_spk],
        "valid": [u for u in fine_tune if u.speaker in valid_spk],
        "dev": load_split(root, *SPLITS["dev"]),
    }
    if (root / LABELLED_TEST[0]).is_file():
        sets["test"] = load_split(root, *LABELLED_TEST)
    else:
        logger.info("no labelled %s (the public test set is blind): no data/test", root / LABELLED_TEST[0])
    if check_audio:
        open_first_audio(sets, lambda u: u.audio, SlueVoxPopuliError)
    counts = write_data_dirs(data_dir, sets, lambda u: str(u.audio))
    data_dir = Path(data_dir)
    (data_dir / "local").mkdir(parents=True, exist_ok=True)
    with atomic_file(data_dir / "local" / "passages.jsonl") as f:
        for u in sets["train"]:
            if u.words:
                f.write(json.dumps({"id": u.utt_id, "text": u.words}, ensure_ascii=False) + "\n")
    return counts


def download_slue_voxpopuli(download_dir: str | Path, url: str = SLUE_VOXPOPULI_URL, timeout: float = 60.0) -> Path:
    """Make sure ``<download_dir>/slue-voxpopuli`` holds the corpus; returns it. Steps already
    done are skipped; the archive and the directory appear only when complete.

    Raises:
        SlueVoxPopuliDownloadError: naming the URL and what to do offline.
        SlueVoxPopuliError: a damaged or unsafe archive.
    """
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / "slue-voxpopuli"
    if target.is_dir():
        try:
            return find_slue_root(target)
        except SlueVoxPopuliError:
            logger.warning("%s exists but is incomplete; extracting again", target)
    archive = download_dir / ARCHIVE_NAME
    db_hint = "extract it and set SLUE_VOXPOPULI=<the directory containing slue-voxpopuli/> in db.sh"
    with extracted_release(url, archive, SlueVoxPopuliError, SlueVoxPopuliDownloadError, db_hint, timeout) as tmp:
        if not (tmp / "slue-voxpopuli").is_dir():
            raise SlueVoxPopuliError(f"{archive}: does not contain slue-voxpopuli/; is it {url}?")
        find_slue_root(tmp / "slue-voxpopuli")
        replace_dir(tmp / "slue-voxpopuli", target)
    return find_slue_root(target)


def ensure_slue_voxpopuli(
    slue_root: Optional[str | Path],
    download: bool,
    download_dir: str | Path,
    url: str = SLUE_VOXPOPULI_URL,
) -> Path:
    """The corpus root: found at ``slue_root``, else downloaded when ``download``."""
    return find_or_download(
        slue_root,
        download,
        find_slue_root,
        lambda: download_slue_voxpopuli(download_dir, url=url),
        SlueVoxPopuliError,
        f"no SLUE-VoxPopuli root given; {HOW_TO_GET}",
    )
