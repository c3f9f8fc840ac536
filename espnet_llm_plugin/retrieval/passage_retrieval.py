"""Passages for the cross-attention ASR model: reading, ranking, and the ``context`` format.

Two modes (arXiv 2406.09618):

* domain adaptation: one memory of target-domain passages (``passages.jsonl``); every utterance
  gets the top-k passages ranked against a query (a first-pass hypothesis or, for training, the
  reference transcript; see :func:`rank_passages`).
* dynamic context: every utterance brings its own documents (Spoken-SQuAD style, a JSONL of
  ``{"utt_id": ..., "documents": [...]}``); they are ranked the same way, per utterance.

Rankers: :class:`Bm25Index` (Okapi BM25 over lower-cased words), :class:`TfidfIndex` (cosine of
TF-IDF vectors), both sparse (scikit-learn vectorisers, scipy matrices), and
:class:`LmEmbeddingIndex` (cosine of mean-pooled last hidden states of a local Hugging Face LM).

``context`` file format (one line per utterance, Kaldi ``text``-style, read by ESPnet as a
``text`` data entry)::

    utt_id passage one text ||| passage two text ||| ...

Passages are in rank order, separated by :data:`PASSAGE_SEPARATOR`. Tokenised for the LLM
(:func:`context_token_ids`), each passage is tokenised without special tokens and passages are
joined by the tokenizer's eos id: the ``context_ids`` file (ESPnet ``text_int``) holds those ids.

Leakage trade-off for training contexts: ranking with the reference transcript as the query
retrieves the gold passage far more often than decoding will (first-pass hypotheses contain
errors), so the model may learn to over-trust its context. The paper trains with retrieved
context; here use first-pass hypotheses of the training set when available, references
otherwise (``retrieve_passages`` logs a warning when the query file is a ``text`` file of a
data directory, i.e. probably references).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from tqdm import tqdm

PASSAGE_SEPARATOR = "|||"
_WORD = re.compile(r"\w+", re.UNICODE)


class PassageError(ValueError):
    """Bad passages, documents, queries or context lines; the message names the file/utterance."""


@dataclass(frozen=True)
class Passage:
    """One retrievable passage."""

    id: str
    text: str


# ---------------------------------------------------------------- reading
def _clean_text(text: str, where: str) -> str:
    """One line of text; refuses the separator (it would split the passage in two)."""
    text = " ".join(str(text).split())
    if PASSAGE_SEPARATOR in text:
        raise PassageError(f"{where}: passage text contains the separator {PASSAGE_SEPARATOR!r}")
    return text


def _passage_from_json(obj: Any, where: str, default_id: str) -> Passage:
    if isinstance(obj, str):
        text, pid = obj, default_id
    elif isinstance(obj, dict):
        if "text" not in obj:
            raise PassageError(f"{where}: a passage needs a 'text' field, got keys {sorted(obj)}")
        text, pid = obj["text"], str(obj.get("id", default_id))
    else:
        raise PassageError(f"{where}: a passage must be a JSON object or string, got {type(obj).__name__}")
    text = _clean_text(text, where)
    if not text:
        raise PassageError(f"{where}: passage '{pid}' has empty text")
    return Passage(pid, text)


def read_passages(path: Union[str, Path]) -> List[Passage]:
    """Read a passage memory.

    Formats: JSONL (``.jsonl`` / ``.json`` suffix, or a first line starting with ``{``), one object
    per line with ``id`` and ``text`` (other keys ignored); or plain text, one passage per line,
    ids ``<line number>``.

    Raises:
        PassageError: missing or empty file, bad JSON, missing text, duplicate id.
    """
    path = Path(path)
    if not path.is_file():
        raise PassageError(f"{path}: passages file not found")
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise PassageError(f"{path}: passages file is empty")
    is_json = path.suffix in (".jsonl", ".json") or lines[0][1].startswith("{")
    passages: List[Passage] = []
    seen: Set[str] = set()
    for n, line in lines:
        where = f"{path}:{n}"
        if is_json:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise PassageError(f"{where}: invalid JSON: {e}") from e
            if isinstance(obj, dict) and "id" not in obj:
                raise PassageError(f"{where}: a passage needs an 'id' field")
            p = _passage_from_json(obj, where, str(n))
        else:
            p = Passage(str(n), _clean_text(line, where))
        if p.id in seen:
            raise PassageError(f"{where}: duplicate passage id '{p.id}'")
        seen.add(p.id)
        passages.append(p)
    return passages


def read_utterance_documents(path: Union[str, Path]) -> Dict[str, List[Passage]]:
    """Read per-utterance documents (dynamic context).

    Format: JSONL, one line per utterance: ``{"utt_id": "...", "documents": [...]}`` where each
    document is a string or an object with ``text`` (and optionally ``id``; default
    ``<utt_id>-<index>``).

    Raises:
        PassageError: missing/empty file, bad JSON, missing fields, duplicate utterance, an
            utterance without documents.
    """
    path = Path(path)
    if not path.is_file():
        raise PassageError(f"{path}: documents file not found")
    out: Dict[str, List[Passage]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PassageError(f"{where}: invalid JSON: {e}") from e
        if not isinstance(obj, dict) or "utt_id" not in obj or "documents" not in obj:
            raise PassageError(f"{where}: each line needs 'utt_id' and 'documents'")
        utt = str(obj["utt_id"])
        if utt in out:
            raise PassageError(f"{where}: duplicate utterance '{utt}'")
        docs = obj["documents"]
        if not isinstance(docs, list) or not docs:
            raise PassageError(f"{where}: utterance '{utt}' has no documents")
        out[utt] = [_passage_from_json(d, f"{where} ({utt})", f"{utt}-{i}") for i, d in enumerate(docs)]
    if not out:
        raise PassageError(f"{path}: documents file is empty")
    return out


def read_gold(path: Union[str, Path]) -> Dict[str, Set[str]]:
    """``utt_id passage_id [passage_id ...]`` lines -> gold passage ids per utterance."""
    path = Path(path)
    if not path.is_file():
        raise PassageError(f"{path}: gold file not found")
    gold: Dict[str, Set[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise PassageError(f"{path}:{n}: utterance '{parts[0]}' has no gold passage id")
        gold.setdefault(parts[0], set()).update(parts[1:])
    return gold


# ---------------------------------------------------------------- context format
def join_passages(texts: Sequence[str]) -> str:
    """Passages (rank order) -> one ``context`` line value."""
    return f" {PASSAGE_SEPARATOR} ".join(_clean_text(t, "join_passages") for t in texts)


def split_passages(value: str) -> List[str]:
    """One ``context`` line value -> passage texts (empty pieces dropped)."""
    return [p.strip() for p in value.split(PASSAGE_SEPARATOR) if p.strip()]


def context_token_ids(value: str, tokenizer: Any) -> List[int]:
    """Tokenise a ``context`` value for the LLM: passages joined by the eos id.

    Each passage is tokenised without special tokens; an eos id inside a passage (its text
    spelled the eos token) is dropped so that it cannot split the passage.
    """
    sep = tokenizer.eos_token_id
    if sep is None:
        raise PassageError("context_token_ids: the tokenizer has no eos token (the passage separator)")
    ids: List[int] = []
    for i, text in enumerate(split_passages(value)):
        if i:
            ids.append(int(sep))
        ids.extend(int(t) for t in tokenizer(text, add_special_tokens=False).input_ids if t != sep)
    return ids


# ---------------------------------------------------------------- rankers
def words(text: str) -> List[str]:
    """Lower-cased word tokens of ``text``."""
    return _WORD.findall(text.lower())


def _word_counts(texts: Sequence[str]):
    """``(N, V)`` CSR matrix of word counts (words as :func:`words` splits them) and the vocabulary.

    scikit-learn's vectoriser keeps the matrix sparse: 8k passages take a few MiB where a dense
    ``N x V`` array took gigabytes.
    """
    vectorizer = CountVectorizer(lowercase=True, token_pattern=_WORD.pattern, dtype=np.float64)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError as e:  # scikit-learn: "empty vocabulary"
        raise PassageError(f"no passage holds a word to index ({len(texts)} passages): {e}") from e
    return counts.tocsr(), vectorizer.vocabulary_


def _query_counts(query: str, vocab: Dict[str, int]) -> Dict[int, int]:
    """Column index -> count of the query's words that the index knows."""
    out: Dict[int, int] = {}
    for w in words(query):
        j = vocab.get(w)
        if j is not None:
            out[j] = out.get(j, 0) + 1
    return out


def _column_scores(matrix, query: Dict[int, float]) -> np.ndarray:
    """``matrix[:, cols] @ values``: ``(N,)`` scores from the query's columns of a CSC matrix."""
    if not query:
        return np.zeros(matrix.shape[0])
    cols = np.fromiter(query.keys(), dtype=np.int64, count=len(query))
    values = np.fromiter(query.values(), dtype=np.float64, count=len(query))
    return np.asarray(matrix[:, cols] @ values).ravel()


class Bm25Index:
    """Okapi BM25 over words; ``scores(query)`` -> ``(N,)`` float array.

    The per-(passage, word) BM25 weights are precomputed into one sparse ``(N, V)`` matrix, so a
    query is a sparse matrix-vector product.

    Args:
        texts: the passages.
        k1, b: BM25 term-frequency saturation and length normalisation.
    """

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        if not texts:
            raise PassageError("Bm25Index: no passages to index")
        self.k1, self.b = k1, b
        tf, self.vocab = _word_counts(texts)
        n = tf.shape[0]
        doc_len = np.asarray(tf.sum(axis=1)).ravel()
        avg_len = max(float(doc_len.mean()), 1e-9)
        df = np.bincount(tf.indices, minlength=tf.shape[1])
        # the "+1" variant keeps idf positive for words in more than half the passages
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * doc_len / avg_len)  # (N,)
        rows = np.repeat(np.arange(n), np.diff(tf.indptr))
        weights = tf.copy()
        weights.data = idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm[rows])
        self.weights = weights.tocsc()  # (N, V); a query reads only its words' columns

    def __len__(self) -> int:
        return self.weights.shape[0]

    def scores(self, query: str) -> np.ndarray:
        return _column_scores(self.weights, _query_counts(query, self.vocab))


class TfidfIndex:
    """Cosine similarity of (1 + log tf) * idf word vectors; ``scores(query)`` -> ``(N,)``.

    idf is the smoothed ``log((1 + N) / (1 + df)) + 1``; vectors are L2-normalised (scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True)``, sparse).
    """

    def __init__(self, texts: Sequence[str]):
        if not texts:
            raise PassageError("TfidfIndex: no passages to index")
        self.vectorizer = TfidfVectorizer(
            lowercase=True, token_pattern=_WORD.pattern, sublinear_tf=True, smooth_idf=True, norm="l2", dtype=np.float64
        )
        try:
            self.matrix = self.vectorizer.fit_transform(texts).tocsc()  # (N, V)
        except ValueError as e:  # scikit-learn: "empty vocabulary"
            raise PassageError(f"no passage holds a word to index ({len(texts)} passages): {e}") from e
        self.vocab = self.vectorizer.vocabulary_
        self.idf = self.vectorizer.idf_  # (V,)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def scores(self, query: str) -> np.ndarray:
        counts = _query_counts(query, self.vocab)
        weights = {j: (1.0 + np.log(c)) * self.idf[j] for j, c in counts.items()}
        norm = np.sqrt(sum(w * w for w in weights.values()))
        if norm == 0:
            return np.zeros(len(self))
        return _column_scores(self.matrix, {j: w / norm for j, w in weights.items()})


class LmEmbeddingIndex:
    """Cosine similarity of mean-pooled last hidden states of a Hugging Face LM.

    Args:
        texts: the passages.
        model, tokenizer: a loaded HF model (any ``AutoModel``/causal LM) and its tokenizer.
        batch_size: texts per forward pass.
    """

    def __init__(self, texts: Sequence[str], model: Any, tokenizer: Any, batch_size: int = 16):
        if not texts:
            raise PassageError("LmEmbeddingIndex: no passages to index")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.matrix = self.embed(texts)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` L2-normalised mean-pooled embeddings."""
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            rows = [
                self.tokenizer(t, add_special_tokens=False).input_ids or [pad]
                for t in texts[start : start + self.batch_size]
            ]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
            with torch.no_grad():
                out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            hidden = out.hidden_states[-1].float()  # (b, L, D)
            m = mask.to(device).unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(chunks).astype(np.float64)

    def scores(self, query: str) -> np.ndarray:
        return self.matrix @ self.embed([query])[0]

    def scores_batch(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)`` scores; queries embedded in batches (faster than one by one)."""
        return self.embed(queries) @ self.matrix.T


def build_index(texts: Sequence[str], scorer: str, lm: Optional[Tuple[Any, Any]] = None):
    """An index of ``scorer`` type: ``bm25`` | ``tfidf`` | ``lm_embedding`` (needs ``lm``)."""
    if scorer == "bm25":
        return Bm25Index(texts)
    if scorer == "tfidf":
        return TfidfIndex(texts)
    if scorer == "lm_embedding":
        if lm is None:
            raise PassageError("scorer lm_embedding needs an LM (--embed_model)")
        return LmEmbeddingIndex(texts, *lm)
    raise PassageError(f"unknown scorer {scorer!r} (bm25, tfidf, lm_embedding)")


def top_k(scores: np.ndarray, k: int) -> List[int]:
    """Indices of the ``k`` best scores; ties keep passage order (stable)."""
    if k < 1:
        raise PassageError(f"num_passages must be >= 1, got {k}")
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k]]


def rank_passages(
    queries: Dict[str, str],
    passages: Union[Sequence[Passage], Dict[str, Sequence[Passage]]],
    k: int,
    scorer: str = "bm25",
    lm: Optional[Tuple[Any, Any]] = None,
    progress: bool = False,
    exclude_query: bool = False,
) -> Dict[str, List[Passage]]:
    """Top-``k`` passages per utterance.

    Args:
        queries: utt_id -> query text (a first-pass hypothesis, or the reference in training).
        passages: one shared memory (domain adaptation), or utt_id -> its own documents
            (dynamic context; every query utterance must have documents and vice versa).
        k: passages per utterance (fewer when fewer exist).
        scorer: ``bm25`` | ``tfidf`` | ``lm_embedding``.
        lm: ``(model, tokenizer)`` for ``lm_embedding``.
        progress: show a tqdm progress bar over the utterances.
        exclude_query: never return a passage that contains the query's words verbatim. For
            training contexts ranked with reference transcripts: the memory holding the
            utterance's own sentence would teach the model to copy a gold passage that test
            time never offers; without it the model learns from related passages only.

    Raises:
        PassageError: k < 1, no passages, or utterances missing on either side.
    """
    if k < 1:
        raise PassageError(f"num_passages must be >= 1, got {k}")
    if isinstance(passages, dict):
        missing = [u for u in queries if u not in passages]
        unknown = [u for u in passages if u not in queries]
        if missing:
            raise PassageError(f"no documents for utterance '{missing[0]}' ({len(missing)} utterances missing)")
        if unknown:
            raise PassageError(f"documents given for unknown utterance '{unknown[0]}' (not among the queries)")
        out = {}
        for utt, query in tqdm(queries.items(), desc="rank", disable=not progress):
            docs = list(passages[utt])
            index = build_index([p.text for p in docs], scorer, lm)
            scores = index.scores(query)
            if exclude_query:
                scores = _without_query(scores, query, [_word_string(p.text) for p in docs])
            out[utt] = [docs[i] for i in top_k(scores, k)]
        return out
    memory = list(passages)
    if not memory:
        raise PassageError("no passages to rank")
    index = build_index([p.text for p in memory], scorer, lm)
    memory_words = [_word_string(p.text) for p in memory] if exclude_query else []

    def best(scores: np.ndarray, query: str) -> List[Passage]:
        if exclude_query:
            scores = _without_query(scores, query, memory_words)
        return [memory[i] for i in top_k(scores, k)]

    if isinstance(index, LmEmbeddingIndex):
        all_scores = index.scores_batch(list(queries.values()))
        return {utt: best(s, q) for (utt, q), s in zip(queries.items(), all_scores)}
    items = tqdm(queries.items(), desc="rank", disable=not progress)
    return {utt: best(index.scores(q), q) for utt, q in items}


def _word_string(text: str) -> str:
    """`` w1 w2 ... `` (lower-cased words, space-padded) for whole-word containment tests."""
    return " " + " ".join(words(text)) + " "


def _without_query(scores: np.ndarray, query: str, passage_words: Sequence[str]) -> np.ndarray:
    """``scores`` with passages containing ``query`` verbatim pushed below every other one
    (they can still fill the top-k when nothing else is left); an empty query excludes nothing."""
    needle = _word_string(query)
    if not needle.strip():
        return scores
    hits = np.fromiter((needle in p for p in passage_words), dtype=bool, count=len(passage_words))
    if not hits.any():
        return scores
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[hits] = -np.inf
    return scores


def recall_at_k(ranked: Dict[str, List[Passage]], gold: Dict[str, Set[str]], ks: Sequence[int]) -> Dict[str, float]:
    """``Recall@k``: share of utterances (with gold) whose top-k holds a gold passage."""
    utts = [u for u in ranked if u in gold]
    if not utts:
        raise PassageError("recall: no ranked utterance has a gold passage (check utterance ids)")
    out = {}
    for k in ks:
        hits = sum(any(p.id in gold[u] for p in ranked[u][:k]) for u in utts)
        out[f"recall@{k}"] = hits / len(utts)
    out["num_utterances"] = len(utts)
    return out
