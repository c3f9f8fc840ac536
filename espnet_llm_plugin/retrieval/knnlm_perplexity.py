"""Perplexity of a text set under an LM alone and under the kNN-LM (Khandelwal et al. 2020).

Every text is framed and shown to the LM as decoding shows hypotheses to it (the key
encoder's :class:`~espnet_llm_plugin.core.framing.LmFraming` and
:class:`~espnet_llm_plugin.core.text_form.TextForm`): ``start + to_llm(text) + end[0]``. The
scored events are the text tokens and the first end token (the "text ends here" event). Each
event's query is the key encoder's hidden state over the text's prefix (windows of
``eval_window`` tokens; any text shorter than that is seen whole, exactly as
:class:`~espnet_llm_plugin.retrieval.hf_lm_scorer.HfLmScorer` sees a hypothesis), its base
log-prob the LM's, and its kNN-LM log-prob comes from
:func:`~espnet_llm_plugin.retrieval.knnlm_scorer.interpolate_knn`, the function
:class:`~espnet_llm_plugin.retrieval.knnlm_scorer.KnnLmScorer` interpolates with in beam
search (``lambda = 0``: the base log-prob itself; ``lambda = 1``: the kNN distribution
alone, as the scorer does).

Perplexities:

* per token: ``exp(-sum log p / events)`` (LLM tokens + one end event per text);
* per word: ``exp(-sum log p / (words + texts))``, words counted in the recipe form
  (whitespace-separated), the end of each text counted as one word (SRILM's ``</s>``), so
  LMs with different tokenizers compare.

One search with the largest ``k`` serves every grid point (neighbours come sorted by
distance, so the first ``k'`` are the ``k'`` nearest).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_llm_plugin.retrieval.document_store import Document, iter_windows, text_ids
from espnet_llm_plugin.retrieval.knnlm_scorer import interpolate_knn, knn_log_probs

logger = logging.getLogger(__name__)


@dataclass
class EvalEvents:
    """The scored next-token events of one text set.

    Attributes:
        name: the set's name.
        lm_logp: ``(N,)`` float64 base log-probs of the targets.
        queries: ``(N, D)`` float32 key-encoder states predicting them.
        targets: ``(N,)`` int64 target token ids.
        n_texts: texts in the set; n_words: their recipe-form words (end events not included).
        text_index: ``(N,)`` int64 position in ``texts`` of the text each event belongs to.
    """

    name: str
    lm_logp: np.ndarray
    queries: np.ndarray
    targets: np.ndarray
    n_texts: int
    n_words: int
    text_index: np.ndarray

    @property
    def n_events(self) -> int:
        return int(len(self.targets))


def collect_events(
    name: str,
    texts: Sequence[Tuple[str, str]],
    lm: Any,
    key_encoder: Optional[Any] = None,
    eval_window: int = 1024,
    eval_stride: Optional[int] = None,
    progress: bool = False,
) -> EvalEvents:
    """Base log-probs and queries of every event of ``texts`` (``[(text_id, recipe text)]``).

    Args:
        lm: a :class:`~espnet_llm_plugin.retrieval.key_encoder.KeyEncoder` over the LM (its
            framing and text form frame the texts).
        key_encoder: the encoder computing queries; None: ``lm`` (the decoding setting).
        eval_window: tokens of context per window; texts up to this long are seen whole.
        eval_stride: step between windows of longer texts; None: ``eval_window // 2`` (each
            event then has at least ``eval_window // 2 - 1`` tokens of left context).
    """
    if not texts:
        raise ValueError(f"eval set '{name}' has no text")
    # documents are named by position: text ids need not be unique
    docs = [Document(str(i), text_ids(lm.tokenizer, t, lm.framing, lm.text_form)) for i, (_, t) in enumerate(texts)]
    for i, d in enumerate(docs):
        if len(d.ids) < 2:
            tid, text = texts[i]
            raise ValueError(
                f"eval set '{name}', id '{tid}': text {i + 1} ({text!r}) has no token to score (framing without start?)"
            )
    stride = max(1, eval_window // 2) if eval_stride is None else eval_stride
    windows = list(iter_windows(docs, eval_window, stride))
    text_index = np.repeat([int(w.doc_id) for w in windows], [w.n_keys for w in windows]).astype(np.int64)
    queries, targets, lm_logp = lm.encode(windows, progress=progress, with_logp=True)
    if key_encoder is not None and key_encoder is not lm:  # queries from another model
        queries, q_targets = key_encoder.encode(windows, progress=progress)
        if not np.array_equal(q_targets, targets):
            raise ValueError(f"eval set '{name}': the key encoder and the LM tokenise the texts differently")
    n_words = sum(len(t.split()) for _, t in texts)
    return EvalEvents(name, lm_logp.astype(np.float64), queries, targets, len(texts), n_words, text_index)


def knnlm_target_logp(
    lm_logp: torch.Tensor,
    scores: torch.Tensor,
    values: torch.Tensor,
    targets: torch.Tensor,
    lam: float,
    temperature: float,
    metric: str,
) -> torch.Tensor:
    """kNN-LM ``log p(target)`` ``(n,)`` as :class:`KnnLmScorer` computes it, without the
    full vocabulary.

    The scorer's :func:`interpolate_knn` is applied to a per-row vocabulary of ``1 + k``
    columns: column 0 is the target, column ``j`` holds neighbour ``j``'s token (neighbours
    whose token is the target point at column 0). ``interpolate_knn`` only touches columns
    that neighbours name and shifts all others by ``log(1 - lambda)``, so column 0 equals its
    full-vocabulary value exactly.

    Args:
        lm_logp: ``(n,)`` base log-probs of the targets.
        scores, values: ``(n, k)`` neighbour distances/similarities and tokens (-1: none).
        targets: ``(n,)`` token ids.
    """
    if lam == 0.0:  # the scorer returns the base scores unchanged
        return lm_logp.clone()
    n, k = values.shape
    hit = values == targets.unsqueeze(1)
    cols = torch.arange(1, k + 1).expand(n, k)
    local = torch.where(values < 0, values, torch.where(hit, torch.zeros_like(cols), cols))
    if lam == 1.0:
        return knn_log_probs(scores, local, k + 1, temperature, metric)[:, 0].double()
    # the other columns' base values do not reach column 0; any finite value will do
    lm_local = torch.zeros(n, k + 1, dtype=torch.float64)
    lm_local[:, 0] = lm_logp
    out = interpolate_knn(lm_local, scores, local, lam, temperature, metric)
    return out[:, 0].double()


def text_logprobs(
    texts: Sequence[str],
    lm: Any,
    datastore: Any,
    k: int,
    lams: Sequence[float],
    temperature: float,
    eval_window: int = 1024,
    progress: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """Each text's total log-probability under the LM alone and under the kNN-LM at each
    ``lams`` value: ``(base (n,), knn (len(lams), n))`` float64, the scores n-best rescoring
    compares hypotheses by. One forward pass and one search serve every ``lambda``.

    A text is framed and scored as :func:`collect_events` scores an eval text (its tokens and
    the first end token, queries from ``lm``, the datastore's key encoder); ``temperature`` is
    absolute (the caller multiplies by the datastore's distance scale).

    Raises:
        ValueError: a text with no token to score, naming its position (:func:`collect_events`).
    """
    if not texts:
        return np.zeros(0), np.zeros((len(lams), 0))
    named = [(str(i), t) for i, t in enumerate(texts)]
    events = collect_events("texts", named, lm, eval_window=eval_window, progress=progress)
    scores, values = datastore.search_tensor(torch.from_numpy(events.queries), k)
    scores, values, targets = scores.cpu(), values.cpu(), torch.from_numpy(events.targets)
    base = torch.from_numpy(events.lm_logp)

    def totals(logp: torch.Tensor) -> np.ndarray:
        return np.bincount(events.text_index, weights=logp.numpy(), minlength=len(texts))

    knn = [
        totals(knnlm_target_logp(base, scores, values, targets, float(lam), temperature, datastore.metric))
        for lam in lams
    ]
    return totals(base), np.stack(knn) if knn else np.zeros((0, len(texts)))


def perplexities(total_logp: float, events: EvalEvents) -> Dict[str, Optional[float]]:
    """Per-token and per-word perplexity of a summed natural log-prob ``logprob`` (None
    where infinite, e.g. a target no neighbour has at ``lambda = 1``)."""

    def ppl(n: int) -> Optional[float]:
        v = -total_logp / n
        return None if not math.isfinite(v) or v > 700 else float(math.exp(v))

    return {
        "ppl_token": ppl(events.n_events),
        "ppl_word": ppl(events.n_words + events.n_texts),
        "logprob": float(total_logp) if math.isfinite(total_logp) else None,
    }


def evaluate_grid(
    events: EvalEvents,
    datastore: Any,
    ks: Sequence[int],
    lambdas: Sequence[float],
    temperatures: Sequence[float],
    temperature_scale: float = 1.0,
) -> Dict[str, Any]:
    """Base and kNN-LM perplexities of ``events`` over the grid.

    Args:
        datastore: a :class:`~espnet_llm_plugin.retrieval.datastore.FaissDatastore`.
        temperatures: in units of ``temperature_scale`` (the softmax divides ``-distance`` by
            ``temperature * temperature_scale``).

    Returns:
        ``{"texts", "tokens", "words", "base": {...}, "grid": [{"k", "lambda", "temperature",
        "ppl_token", "ppl_word"}], "best": {...}}``; ``best`` minimises the per-token
        perplexity (first in grid order on ties).
    """
    kmax = max(ks)
    scores, values = datastore.search_tensor(torch.from_numpy(events.queries), kmax)
    scores, values = scores.cpu(), values.cpu()
    lm_logp = torch.from_numpy(events.lm_logp)
    targets = torch.from_numpy(events.targets)
    base_total = float(lm_logp.sum())
    grid: List[Dict[str, Any]] = []
    for k in ks:
        s, v = scores[:, :k], values[:, :k]
        for lam in lambdas:
            for t in temperatures:
                logp = knnlm_target_logp(
                    lm_logp, s, v, targets, float(lam), float(t) * temperature_scale, datastore.metric
                )
                grid.append(
                    {
                        "k": int(k),
                        "lambda": float(lam),
                        "temperature": float(t),
                        **perplexities(float(logp.sum()), events),
                    }
                )
    finite = [g for g in grid if g["ppl_token"] is not None]
    best = min(finite, key=lambda g: g["ppl_token"]) if finite else None
    return {
        "texts": events.n_texts,
        "tokens": events.n_events,
        "words": events.n_words,
        "base": perplexities(base_total, events),
        "grid": grid,
        "best": best,
    }
