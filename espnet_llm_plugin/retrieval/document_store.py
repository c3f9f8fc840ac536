"""Memory corpus -> token-id documents -> sliding windows for datastore keys.

A *document* is one memory item: a line of a text file, a passage of ``passages.jsonl``, or
(multi-modal memory) an utterance's speech units followed by its transcript. Its text, in the
recipe's form, is mapped to the form the LLM reads (:class:`~espnet_llm_plugin.core.text_form.TextForm`,
e.g. sentence case for SmolLM2) and tokenised with the key encoder's HF tokenizer inside the
model's framing (:class:`~espnet_llm_plugin.core.framing.LmFraming`: ``start text end``; the
legacy ``[bos] text [eos]`` for a model without ``llm_usage.json``). Only the first end token
is kept: it is the "text ends here" event a query can predict; further end tokens are no
next-token events of the text. A multi-modal document puts ``<speech><unit_a>...</speech>``
(:func:`espnet_llm_plugin.core.unit_tokens.speech_span`) before it as a fixed *context
prefix* that every window of the document starts with.

A *window* holds at most ``window`` text tokens. The key encoder emits one (key, value) pair
per text position ``t`` of a window whose next token ``t+1`` is a *target* of that window:
with ``stride < window`` windows overlap, and each text token is the target of exactly one
window (the first window that reaches it), so the datastore holds every next-token event of
the corpus once, each with up to ``window - 1`` tokens of left context.

Several *scales* (:func:`iter_scaled_windows`, e.g. windows of 8 and of 64 tokens) give
every event one key per scale, each with that scale's context: a query over a short prefix
(an utterance's first words in decoding) finds keys with short contexts, one over a long text
finds keys with long ones. Keys two scales share (same window start, same position: the same
hidden state) are emitted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from espnet_llm_plugin.core.unit_tokens import SPEECH_END, SPEECH_START, speech_span
from espnet_llm_plugin.fileio.unit_file import read_units

if TYPE_CHECKING:  # core types only for annotations; core imports cheaply anyway
    from espnet_llm_plugin.core.framing import LmFraming
    from espnet_llm_plugin.core.text_form import TextForm


class MemoryCorpusError(ValueError):
    """Bad memory corpus (missing/empty file, bad line); the message names the file."""


@dataclass(frozen=True)
class Document:
    """One memory item as token ids.

    Attributes:
        doc_id: line number / passage id / utterance id.
        ids: text token ids ``start text end[0]`` (the framing's; legacy: ``[bos] text [eos]``).
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
    start: int = 0  # the window's text start in the document

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
            out.append(Window(doc.doc_id, doc.prefix + ids[start:end], len(doc.prefix), first, n_keys, start))
            covered = end - 1
        if end == n:
            break
        start += stride
    return out


def text_ids(
    tokenizer, text: str, framing: Optional["LmFraming"] = None, text_form: Optional["TextForm"] = None
) -> Tuple[int, ...]:
    """Token ids of a memory text: ``start + to_llm(text) + end[:1]``.

    Args:
        text: in the recipe's form.
        framing: start/end tokens; None: the legacy ``[bos] text [eos]`` (bos/eos when the
            tokenizer has them).
        text_form: recipe -> LLM text mapping; None: the text as it is.
    """
    if text_form is not None:
        text = text_form.to_llm(text)
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    if framing is None:
        start = [] if tokenizer.bos_token_id is None else [int(tokenizer.bos_token_id)]
        end = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    else:
        start, end = framing.start_ids(tokenizer), framing.end_ids(tokenizer)[:1]
    return tuple(int(i) for i in start + ids + end)


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


def text_documents(
    tokenizer, path: str | Path, framing: Optional["LmFraming"] = None, text_form: Optional["TextForm"] = None
) -> List[Document]:
    """Text-only memory: one document per line / passage of ``path`` (framing/text form as
    in :func:`text_ids`)."""
    return [Document(doc_id, text_ids(tokenizer, text, framing, text_form)) for doc_id, text in read_memory_texts(path)]


def transcript_documents(
    tokenizer, text_path: str | Path, framing: Optional["LmFraming"] = None, text_form: Optional["TextForm"] = None
) -> List[Document]:
    """Text-only memory of a Kaldi ``text``: one document per transcript (utterance ids are
    not memory text; empty transcripts skipped). The text-only counterpart of
    :func:`multimodal_documents` over the same utterances.

    Raises:
        MemoryCorpusError: the file is missing or has no transcript.
    """
    rows = read_kaldi_text(text_path)
    if not rows:
        raise MemoryCorpusError(f"memory transcript file {text_path} has no transcript")
    return [Document(utt, text_ids(tokenizer, text, framing, text_form)) for utt, text in rows]


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
    tokenizer,
    units_path: str | Path,
    text_path: str | Path,
    num_units: Optional[int] = None,
    framing: Optional["LmFraming"] = None,
    text_form: Optional["TextForm"] = None,
) -> List[Document]:
    """Multi-modal memory: per utterance, ``<speech>units</speech>`` context + its transcript.

    Args:
        units_path: units file (``utt_id u1 u2 ...``, :mod:`espnet_llm_plugin.fileio.unit_file`).
        text_path: Kaldi ``text`` (``utt_id transcript``); utterances in both files are used.

    Raises:
        MemoryCorpusError: a file is missing, no utterance is in both files, or the tokenizer
            lacks the unit tokens (not a speech+text LM tokenizer).
    """

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
        docs.append(Document(utt, text_ids(tokenizer, text, framing, text_form), prefix))
    if not docs:
        raise MemoryCorpusError(
            f"multi-modal memory is empty: no utterance with a transcript in {text_path} has units in {units_path}"
        )
    return docs


def check_memory_args(
    memory_text: Optional[str | Path], memory_text_file: Optional[str | Path], memory_units: Optional[str | Path]
) -> None:
    """Raise :class:`MemoryCorpusError` unless exactly one kind of memory is given (call before
    loading a model)."""
    if bool(memory_text) == bool(memory_units or memory_text_file):
        raise MemoryCorpusError(
            "give either --memory_text, or --memory_text_file (a Kaldi text: text-only memory of its "
            "transcripts) with or without --memory_units (multi-modal memory)"
        )
    if memory_units and not memory_text_file:
        raise MemoryCorpusError("--memory_units needs --memory_text_file (Kaldi text with the transcripts)")


def memory_documents(
    tokenizer,
    memory_text: Optional[str | Path] = None,
    memory_text_file: Optional[str | Path] = None,
    memory_units: Optional[str | Path] = None,
    num_units: Optional[int] = None,
    framing: Optional["LmFraming"] = None,
    text_form: Optional["TextForm"] = None,
) -> List[Document]:
    """The documents of a memory given as ``build_datastore`` takes it: ``memory_text``
    (lines or ``.jsonl`` passages), ``memory_text_file`` alone (a Kaldi text's transcripts), or
    ``memory_units`` + ``memory_text_file`` (multi-modal).

    Raises:
        MemoryCorpusError: see :func:`check_memory_args`; a missing or empty file.
    """
    check_memory_args(memory_text, memory_text_file, memory_units)
    if memory_text:
        return text_documents(tokenizer, memory_text, framing, text_form)
    if not memory_units:
        return transcript_documents(tokenizer, memory_text_file, framing, text_form)
    return multimodal_documents(tokenizer, memory_units, memory_text_file, num_units, framing, text_form)


def iter_windows(docs: Sequence[Document], window: int = 20, stride: Optional[int] = None) -> Iterator[Window]:
    """All windows of ``docs`` in order."""
    for doc in docs:
        yield from sliding_windows(doc, window, stride)


def scaled_windows(doc: Document, windows: Sequence[int], strides: Sequence[int]) -> List[Window]:
    """The windows of every ``(window, stride)`` scale of ``doc``, in scale order; a key an
    earlier scale has (same window start and position) is left out.

    Raises:
        ValueError: no scale, ``windows`` and ``strides`` of different lengths, or a bad scale.
    """
    if not windows or len(windows) != len(strides):
        raise ValueError(f"need one stride per window, got windows {list(windows)} and strides {list(strides)}")
    emitted: Dict[int, Set[int]] = {}  # window start -> key positions (absolute) emitted
    out: List[Window] = []
    for window, stride in zip(windows, strides):
        for w in sliding_windows(doc, window, stride):
            done = emitted.setdefault(w.start, set())
            keep = [p for p in range(w.start + w.first_key, w.start + w.first_key + w.n_keys) if p not in done]
            done.update(keep)
            # contiguous runs of new positions, each a window up to its last key's next token
            runs: List[List[int]] = []
            for p in keep:
                if runs and p == runs[-1][-1] + 1:
                    runs[-1].append(p)
                else:
                    runs.append([p])
            for run in runs:
                ids = doc.ids[w.start : run[-1] + 2]
                out.append(Window(doc.doc_id, doc.prefix + ids, len(doc.prefix), run[0] - w.start, len(run), w.start))
    return out


def iter_scaled_windows(docs: Sequence[Document], windows: Sequence[int], strides: Sequence[int]) -> Iterator[Window]:
    """All windows of ``docs`` at every scale (:func:`scaled_windows`), document by document."""
    for doc in docs:
        yield from scaled_windows(doc, windows, strides)
