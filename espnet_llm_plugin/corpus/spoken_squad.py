"""Spoken-SQuAD (SQuAD v1.1 articles read by Google TTS, arXiv 1804.00320): locate or download
the corpus and build Kaldi data directories, a passage memory and per-utterance documents.

Official release (https://github.com/chiahsuan156/Spoken-SQuAD)::

    spoken_train-v1.1.json, spoken_test-v1.1.json   SQuAD-format JSON whose contexts are the
                                                     CMU Sphinx ASR transcripts (question ids
                                                     are SQuAD's)
    Spoken-SQuAD_audio.zip -> Spoken-SQuAD_audio/{train_wav,dev_wav}.zip
        train_wav/<topic>_<paragraph>_<sentence>.wav  one file per sentence of a SQuAD context,
        dev_wav/<topic>_<paragraph>_<sentence>.wav    indexed as in train-v1.1.json / dev-v1.1.json

The reference transcript of a sentence is the sentence of the original SQuAD v1.1 context (the
TTS input), so the original ``train-v1.1.json`` / ``dev-v1.1.json``
(https://rajpurkar.github.io/SQuAD-explorer/) are needed too. A paragraph is used when its
questions are in the Spoken-SQuAD JSON (the release dropped questions whose answer the ASR
lost) and its context splits into as many sentences as it has wav files; others are skipped and
counted in the log.

Outputs: ``train`` (Spoken-SQuAD training articles minus held-out ones), ``valid`` (those
articles), ``test`` (the Spoken-SQuAD test set = SQuAD dev); utterance ids
``<tr|te>-<topic>-<paragraph>-<sentence>`` (zero-padded), speaker = paragraph (one TTS voice;
the paragraph groups the utterances of one spoken document). Retrieval files:

* ``data/local/passages.jsonl`` - every used paragraph (``id`` = ``<tr|te>-<topic>-<paragraph>``,
  ``text``): the domain memory (``retrieve_passages --passages``).
* ``data/<set>/documents.jsonl`` - ``{"utt_id", "documents": [{"id", "text"}, ...]}``: the
  paragraphs of the utterance's own article, the dynamic context (``--documents``; one file
  per set because retrieve_passages wants documents for exactly the queried utterances).
* ``data/<set>/gold_passages`` - ``utt_id passage_id``: the paragraph it was read from
  (``retrieve_passages --gold`` for Recall@k).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from espnet_llm_plugin.corpus.release import (
    ReleaseError,
    download_release,
    extracted_release,
    find_or_download,
    open_first_audio,
    replace_dir,
    safe_extract_zip,
)
from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_file
from espnet_llm_plugin.fileio.kaldi_data import DataDir

logger = logging.getLogger(__name__)

SPOKEN_SQUAD_JSON_URL = "https://raw.githubusercontent.com/chiahsuan156/Spoken-SQuAD/master"
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
AUDIO_URL = "http://speech.ee.ntu.edu.tw/~chiahsuan/Spoken-SQuAD/Spoken-SQuAD_audio.zip"
AUDIO_ZIP = "Spoken-SQuAD_audio.zip"
AUDIO_DIR = "Spoken-SQuAD_audio"

#: split -> (Spoken-SQuAD JSON, original SQuAD JSON, audio directory, utterance id prefix)
SPLITS: Dict[str, Tuple[str, str, str, str]] = {
    "train": ("spoken_train-v1.1.json", "train-v1.1.json", "train_wav", "tr"),
    "test": ("spoken_test-v1.1.json", "dev-v1.1.json", "dev_wav", "te"),
}

HOW_TO_GET = (
    f"put spoken_train-v1.1.json and spoken_test-v1.1.json (from {SPOKEN_SQUAD_JSON_URL}/), "
    f"train-v1.1.json and dev-v1.1.json (SQuAD v1.1, from {SQUAD_URL}/) and the audio "
    f"({AUDIO_URL}, about 50 GB; extract it and its train_wav.zip/dev_wav.zip into "
    f"{AUDIO_DIR}/train_wav and {AUDIO_DIR}/dev_wav) into one directory and set "
    "SPOKEN_SQUAD=<that directory> in db.sh (--spoken_squad_root for prepare_spoken_squad), "
    "or let the recipe download them with --download true"
)


class SpokenSquadError(ValueError):
    """A Spoken-SQuAD tree or JSON file that cannot be used as it is."""


class SpokenSquadDownloadError(SpokenSquadError):
    """A file of the corpus could not be downloaded."""


# --------------------------------------------------------------------------- locate


def audio_dir(root: Path, name: str) -> Path:
    """``<root>/Spoken-SQuAD_audio/<name>`` or, failing that, ``<root>/<name>``."""
    nested = root / AUDIO_DIR / name
    return nested if nested.is_dir() else root / name


def find_spoken_squad_root(path: str | Path) -> Path:
    """Check ``path`` holds the four JSON files and both audio directories; return it.

    Raises:
        SpokenSquadError: naming the first missing file or directory.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise SpokenSquadError(f"Spoken-SQuAD not found: {path} is not a directory; {HOW_TO_GET}")
    for spoken, squad, wav_dir, _ in SPLITS.values():
        for name in (spoken, squad):
            if not (path / name).is_file():
                raise SpokenSquadError(f"Spoken-SQuAD not found or incomplete: {path / name} is missing; {HOW_TO_GET}")
        d = audio_dir(path, wav_dir)
        if not d.is_dir():
            raise SpokenSquadError(
                f"Spoken-SQuAD incomplete: audio directory {path / AUDIO_DIR / wav_dir} is missing; {HOW_TO_GET}"
            )
    return path.resolve()


# --------------------------------------------------------------------------- parse


_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> List[str]:
    """Split a SQuAD context into sentences at ``. ! ?`` followed by an upper-case letter or
    digit (the TTS read one file per sentence). Paragraphs where this disagrees with the number
    of wav files are skipped by the caller, so a wrong split never mislabels audio."""
    text = " ".join(text.split())
    if not text:
        return []
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        out.append(text[start : m.start()].strip() + text[m.start() : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def read_squad_json(path: str | Path) -> List[List[Tuple[str, Set[str]]]]:
    """A SQuAD-format JSON -> per topic, per paragraph: ``(context, question ids)``.

    Raises:
        SpokenSquadError: invalid JSON or a file without ``data[].paragraphs[].context``.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise SpokenSquadError(f"{path}: invalid JSON ({e}); the file is damaged, get it again") from e
    try:
        return [
            [(p["context"], {q["id"] for q in p.get("qas", [])}) for p in article["paragraphs"]]
            for article in obj["data"]
        ]
    except (KeyError, TypeError) as e:
        raise SpokenSquadError(
            f"{path}: not SQuAD format (expected data[].paragraphs[].context/qas[].id; missing {e})"
        ) from e


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # <prefix>-<topic>-<paragraph>-<sentence>
    passage_id: str  # <prefix>-<topic>-<paragraph> (also the speaker)
    topic: int
    words: str
    wav: Path


@dataclass
class SplitData:
    utts: List[Utterance]
    passages: Dict[str, str]  # passage id -> context
    topic_passages: Dict[int, List[str]]


_WAV_RE = re.compile(r"^(\d+)_(\d+)_(\d+)\.wav$")


def load_split(root: str | Path, split: str) -> SplitData:
    """Utterances and passages of one split ('train' or 'test').

    Raises:
        SpokenSquadError: no wav files, or no usable paragraph at all.
    """
    root = Path(root)
    spoken_json, squad_json, wav_name, prefix = SPLITS[split]
    wav_dir = audio_dir(root, wav_name)
    wavs: Dict[Tuple[int, int], Dict[int, Path]] = defaultdict(dict)
    for entry in os.scandir(wav_dir):
        m = _WAV_RE.match(entry.name)
        if m:
            t, p, s = (int(x) for x in m.groups())
            wavs[(t, p)][s] = Path(entry.path).resolve()
    if not wavs:
        raise SpokenSquadError(
            f"Spoken-SQuAD incomplete: no <topic>_<paragraph>_<sentence>.wav files in {wav_dir}; {HOW_TO_GET}"
        )
    spoken_qids: Set[str] = set()
    for topic in read_squad_json(root / spoken_json):
        for _, qids in topic:
            spoken_qids |= qids
    original = read_squad_json(root / squad_json)
    utts: List[Utterance] = []
    passages: Dict[str, str] = {}
    topic_passages: Dict[int, List[str]] = defaultdict(list)
    skipped = {"not in the Spoken-SQuAD JSON": 0, "no audio": 0, "sentence count differs": 0}
    for t, topic in enumerate(original):
        for p, (context, qids) in enumerate(topic):
            if not qids & spoken_qids:
                skipped["not in the Spoken-SQuAD JSON"] += 1
                continue
            files = wavs.get((t, p))
            if not files:
                skipped["no audio"] += 1
                continue
            sentences = split_sentences(context)
            if sorted(files) != list(range(len(sentences))):
                skipped["sentence count differs"] += 1
                logger.debug("%s_%s: %d sentences, wav files %s", t, p, len(sentences), sorted(files))
                continue
            pid = f"{prefix}-{t:03d}-{p:03d}"
            passages[pid] = " ".join(context.split())
            topic_passages[t].append(pid)
            for s, sentence in enumerate(sentences):
                utts.append(Utterance(f"{pid}-{s:03d}", pid, t, sentence, files[s]))
    n_par = sum(len(tp) for tp in original)
    logger.info(
        "%s: %d of %d paragraphs used (%d utterances); skipped: %s",
        split,
        len(passages),
        n_par,
        len(utts),
        ", ".join(f"{k}: {v}" for k, v in skipped.items()),
    )
    if not utts:
        raise SpokenSquadError(
            f"{split}: no usable paragraph in {root / squad_json} with audio in {wav_dir} "
            f"(skipped: {skipped}); are the JSON files and audio of the same release?"
        )
    return SplitData(sorted(utts, key=lambda u: u.utt_id), passages, dict(topic_passages))


def select_valid_topics(topics: Sequence[int], valid_ratio: float) -> List[int]:
    """Every ``1/valid_ratio``-th article (at least one), deterministic."""
    topics = sorted(set(topics))
    if not 0.0 < valid_ratio < 1.0:
        raise SpokenSquadError(f"valid_ratio must be between 0 and 1 (exclusive), got {valid_ratio}")
    k = min(len(topics), max(1, round(len(topics) * valid_ratio)))
    chosen = sorted({topics[int((i + 0.5) * len(topics) / k)] for i in range(k)})
    if len(chosen) >= len(topics):
        raise SpokenSquadError(f"holding out {len(chosen)} of {len(topics)} training articles leaves none for training")
    return chosen


# --------------------------------------------------------------------------- write


def _documents_line(u: Utterance, data: SplitData) -> str:
    docs = [{"id": pid, "text": data.passages[pid]} for pid in data.topic_passages[u.topic]]
    return json.dumps({"utt_id": u.utt_id, "documents": docs}, ensure_ascii=False) + "\n"


def _write_set(out: Path, utts: Sequence[Utterance], data: SplitData) -> None:
    with atomic_dir(out) as tmp:
        DataDir(
            wav_scp={u.utt_id: str(u.wav) for u in utts},
            text={u.utt_id: u.words for u in utts},
            utt2spk={u.utt_id: u.passage_id for u in utts},
        ).write(tmp)
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for u in utts:
                f.write(_documents_line(u, data))
        with open(tmp / "gold_passages", "w", encoding="utf-8") as f:
            for u in utts:
                f.write(f"{u.utt_id} {u.passage_id}\n")


def prepare_spoken_squad(
    root: str | Path,
    data_dir: str | Path,
    valid_ratio: float = 0.05,
    check_audio: bool = True,
) -> Dict[str, int]:
    """Write ``<data_dir>/{train,valid,test}`` (wav.scp, text, utt2spk, spk2utt,
    documents.jsonl, gold_passages) and ``<data_dir>/local/passages.jsonl``.

    Returns:
        utterances per data directory. Everything is read and checked before writing.
    """
    root = find_spoken_squad_root(root)
    train, test = load_split(root, "train"), load_split(root, "test")
    valid_topics = set(select_valid_topics(list(train.topic_passages), valid_ratio))
    sets = {
        "train": ([u for u in train.utts if u.topic not in valid_topics], train),
        "valid": ([u for u in train.utts if u.topic in valid_topics], train),
        "test": (test.utts, test),
    }
    if check_audio:
        open_first_audio({name: utts for name, (utts, _) in sets.items()}, lambda u: u.wav, SpokenSquadError)
    data_dir = Path(data_dir)
    counts: Dict[str, int] = {}
    for name, (utts, data) in sets.items():
        _write_set(data_dir / name, utts, data)
        counts[name] = len(utts)
        logger.info(
            "wrote %s: %d utterances, %d paragraphs", data_dir / name, len(utts), len({u.passage_id for u in utts})
        )
    (data_dir / "local").mkdir(parents=True, exist_ok=True)
    with atomic_file(data_dir / "local" / "passages.jsonl") as f:
        for data in (train, test):
            for pid, text in sorted(data.passages.items()):
                f.write(json.dumps({"id": pid, "text": text}, ensure_ascii=False) + "\n")
    return counts


# --------------------------------------------------------------------------- download


_DB_HINT = "set SPOKEN_SQUAD in db.sh to a directory holding the corpus"


def _extract_wav_zip(inner_zip: Path, target: Path, work: Path) -> None:
    """Extract ``train_wav.zip``/``dev_wav.zip`` into ``target``, whether its members are at
    the top level or inside one directory."""
    out = work / (inner_zip.stem + ".out")
    try:
        safe_extract_zip(inner_zip, out)
    except ReleaseError as e:
        raise SpokenSquadError(str(e)) from e
    entries = list(out.iterdir())
    replace_dir(entries[0] if len(entries) == 1 and entries[0].is_dir() else out, target)


def download_spoken_squad(
    download_dir: str | Path,
    json_url: str = SPOKEN_SQUAD_JSON_URL,
    squad_url: str = SQUAD_URL,
    audio_url: str = AUDIO_URL,
) -> Path:
    """Make sure ``download_dir`` holds the corpus (the four JSON files and both audio
    directories); returns it. Steps already done are skipped; files and directories appear
    only when complete.

    Raises:
        SpokenSquadDownloadError: naming the URL that failed.
        SpokenSquadError: a damaged or unsafe archive.
    """
    d = Path(download_dir)
    d.mkdir(parents=True, exist_ok=True)
    for spoken, squad, _, _ in SPLITS.values():
        for name, base in ((spoken, json_url), (squad, squad_url)):
            if not (d / name).is_file():
                url = f"{base.rstrip('/')}/{name}"
                logger.info("downloading %s", url)
                download_release(url, d / name, SpokenSquadDownloadError, _DB_HINT)
    wav_dirs = [w for _, _, w, _ in SPLITS.values()]
    if all(audio_dir(d, w).is_dir() for w in wav_dirs):
        return find_spoken_squad_root(d)
    archive = d / AUDIO_ZIP
    if not archive.is_file():
        logger.info("the audio archive is about 50 GB")
    with extracted_release(
        audio_url, archive, SpokenSquadError, SpokenSquadDownloadError, _DB_HINT, extract=safe_extract_zip
    ) as work:
        for w in wav_dirs:
            if audio_dir(d, w).is_dir():
                continue
            inner = work / AUDIO_DIR / f"{w}.zip"
            if not inner.is_file():
                raise SpokenSquadError(f"{archive}: does not contain {AUDIO_DIR}/{w}.zip; is it {audio_url}?")
            _extract_wav_zip(inner, d / AUDIO_DIR / w, work)
    return find_spoken_squad_root(d)


def ensure_spoken_squad(root: Optional[str | Path], download: bool, download_dir: str | Path, **urls: str) -> Path:
    """The corpus root: found at ``root``, else downloaded when ``download``."""
    return find_or_download(
        root,
        download,
        find_spoken_squad_root,
        lambda: download_spoken_squad(download_dir, **urls),
        SpokenSquadError,
        f"no Spoken-SQuAD root given; {HOW_TO_GET}",
    )
