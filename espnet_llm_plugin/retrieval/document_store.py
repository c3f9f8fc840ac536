"""Memory corpus -> token-id documents -> sliding windows for datastore keys.

A *document* is one memory item: a line of a text file, a passage of ``passages.jsonl``, or
(multi-modal memory) an utterance's speech units followed by its transcript. Its text is
tokenised with the key encoder's HF tokenizer as ``[bos] text [eos]``; a multi-modal document
puts ``<speech><unit_a>...</speech>`` (:func:`espnet_llm_plugin.mmlm.unit_tokens.speech_span`)
before it as a fixed *context prefix* that every window of the document starts with.

A *window* holds at most ``window`` text tokens. The key encoder emits one (key, value) pair
per text position ``t`` of a window whose next token ``t+1`` is a *target* of that window:
with ``stride < window`` windows overlap, and each text token is the target of exactly one
window (the first window that reaches it), so the datastore holds every next-token event of
the corpus once, each with up to ``window - 1`` tokens of left context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple


class MemoryCorpusError(ValueError):
    """Bad memory corpus (missing/empty file, bad line); the message names the file."""


@dataclass(frozen=True)
class Document:
    """One memory item as token ids.

    Attributes:
        doc_id: line number / passage id / utterance id.
        ids: text token ids ``[bos] text [eos]`` (bos/eos when the tokenizer has them).
        prefix: context ids placed before every window (multi-modal speech span), no keys.
    """

    doc_id: str
    ids: Tuple[int, ...]
    prefix: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Window:
    """Model input ``prefix + text[start:end]``; keys at text positions ``>= first_key``.

    A key at text position ``p`` (absolute in the document) has value ``text[p + 1]``.
    """

    doc_id: str
    input_ids: Tuple[int, ...]
    n_prefix: int
    first_key: int  # first key position, relative to the window's text start
    n_keys: int

    def key_positions(self) -> List[int]:
        """Input positions (in ``input_ids``) whose hidden state is a key."""
        return [self.n_prefix + self.first_key + j for j in range(self.n_keys)]

    def values(self) -> List[int]:
        """Next-token ids for :meth:`key_positions`."""
        return [self.input_ids[p + 1] for p in self.key_positions()]


def sliding_windows(doc: Document, window: int = 20, stride: Optional[int] = None) -> List[Window]:
    """Cut ``doc`` into windows of ``window`` text tokens every ``stride`` tokens.

    Args:
        window: text tokens per window (>= 2: a key needs a next token).
        stride: step between window starts, ``1 <= stride <= window``; None = ``window``.
    """
    stride = window if stride is None else stride
    if window < 2:
        raise ValueError(f"window must be >= 2 tokens, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in [1, window={window}], got {stride}")
    ids, n = doc.ids, len(doc.ids)
    out: List[Window] = []
    covered = 0  # key positions [0, covered) are done (position p predicts p+1)
    start = 0
    while covered < n - 1:
        end = min(start + window, n)
        first = covered - start
        n_keys = (end - 1) - covered
        if n_keys > 0:
            out.append(Window(doc.doc_id, doc.prefix + ids[start:end], len(doc.prefix), first, n_keys))
            covered = end - 1
        if end == n:
            break
        start += stride
    return out


def _text_ids(tokenizer, text: str) -> Tuple[int, ...]:
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    if tokenizer.bos_token_id is not None:
        ids = [int(tokenizer.bos_token_id)] + ids
    if tokenizer.eos_token_id is not None:
        ids = ids + [int(tokenizer.eos_token_id)]
    return tuple(int(i) for i in ids)


def read_memory_texts(path: str | Path) -> List[Tuple[str, str]]:
    """``[(doc_id, text)]`` from a text file (one sentence/passage per line) or ``*.jsonl``
    passages (``{"id": ..., "text": ...}`` per line).

    Raises:
        MemoryCorpusError: missing file, bad JSON line, or no non-empty text.
    """
    p = Path(path)
    if not p.is_file():
        raise MemoryCorpusError(f"memory text file {p} not found")
    docs: List[Tuple[str, str]] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if p.suffix == ".jsonl":
            try:
                obj = json.loads(line)
                text, doc_id = str(obj["text"]), str(obj.get("id", n))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise MemoryCorpusError(f"{p}:{n}: not a JSON object with a 'text' field ({e})") from e
        else:
            text, doc_id = line, str(n)
        if text.strip():
            docs.append((doc_id, text.strip()))
    if not docs:
        raise MemoryCorpusError(f"memory corpus {p} is empty: no non-empty line/passage")
    return docs


def text_documents(tokenizer, path: str | Path) -> List[Document]:
    """Text-only memory: one document per line / passage of ``path``."""
    return [Document(doc_id, _text_ids(tokenizer, text)) for doc_id, text in read_memory_texts(path)]


def transcript_documents(tokenizer, text_path: str | Path) -> List[Document]:
    """Text-only memory of a Kaldi ``text``: one document per transcript (utterance ids are
    not memory text; empty transcripts skipped). The text-only counterpart of
    :func:`multimodal_documents` over the same utterances.

    Raises:
        MemoryCorpusError: the file is missing or has no transcript.
    """
    rows = read_kaldi_text(text_path)
    if not rows:
        raise MemoryCorpusError(f"memory transcript file {text_path} has no transcript")
    return [Document(utt, _text_ids(tokenizer, text)) for utt, text in rows]


def read_kaldi_text(path: str | Path) -> List[Tuple[str, str]]:
    """``[(utt_id, transcript)]`` of a Kaldi ``text`` file (empty transcripts skipped)."""
    p = Path(path)
    if not p.is_file():
        raise MemoryCorpusError(f"memory transcript file {p} not found")
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].strip():
            out.append((parts[0], parts[1].strip()))
    return out


def multimodal_documents(
    tokenizer, units_path: str | Path, text_path: str | Path, num_units: Optional[int] = None
) -> List[Document]:
    """Multi-modal memory: per utterance, ``<speech>units</speech>`` context + its transcript.

    Args:
        units_path: units file (``utt_id u1 u2 ...``, :mod:`espnet_llm_plugin.fileio.unit_file`).
        text_path: Kaldi ``text`` (``utt_id transcript``); utterances in both files are used.

    Raises:
        MemoryCorpusError: a file is missing, no utterance is in both files, or the tokenizer
            lacks the unit tokens (not a speech+text LM tokenizer).
    """
    from espnet_llm_plugin.fileio.unit_file import read_units
    from espnet_llm_plugin.mmlm.unit_tokens import SPEECH_END, SPEECH_START, speech_span

    if not Path(units_path).is_file():
        raise MemoryCorpusError(f"memory units file {units_path} not found")
    units = read_units(units_path, num_units)
    vocab = tokenizer.get_vocab()
    if SPEECH_START not in vocab or SPEECH_END not in vocab:
        raise MemoryCorpusError(
            f"multi-modal memory ({units_path}) needs a speech+text LM tokenizer with "
            f"{SPEECH_START}/{SPEECH_END} and <unit_i> tokens; this key encoder's tokenizer has none"
        )
    docs = []
    for utt, text in read_kaldi_text(text_path):
        if utt not in units:
            continue
        span = speech_span(units[utt])
        prefix = tuple(int(i) for i in tokenizer(span, add_special_tokens=False).input_ids)
        if len(prefix) != len(units[utt]) + 2:
            raise MemoryCorpusError(
                f"{units_path}: utterance '{utt}': a unit is not one token of the key encoder's "
                f"tokenizer (are there fewer <unit_i> tokens than units?)"
            )
        docs.append(Document(utt, _text_ids(tokenizer, text), prefix))
    if not docs:
        raise MemoryCorpusError(
            f"multi-modal memory is empty: no utterance with a transcript in {text_path} "
            f"has units in {units_path}"
        )
    return docs


def iter_windows(docs: Sequence[Document], window: int = 20, stride: Optional[int] = None) -> Iterator[Window]:
    """All windows of ``docs`` in order."""
    for doc in docs:
        yield from sliding_windows(doc, window, stride)
