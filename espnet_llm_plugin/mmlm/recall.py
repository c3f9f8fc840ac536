"""Recall@k of a retrieval similarity matrix.

``similarity`` is ``(Nq, Nd)``: query ``q`` against document ``d``, higher = more similar.
Each query has one or more relevant documents (a set of indices: e.g. one transcript, or all
utterances that share a transcript). Query ``q`` is a hit at ``k`` when its best-ranked relevant
document has rank < ``k``.

Ties are broken deterministically in favour of the lower document index: the rank of document
``d`` for query ``q`` is ``#{d' : s[q, d'] > s[q, d]} + #{d' < d : s[q, d'] == s[q, d]}``,
i.e. its position in a stable sort by descending score. So a model that gives every document
the same score ranks them in index order (no credit from ties beyond that order).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Union

import torch

Relevant = Union[int, Iterable[int]]


def ranks_of_relevant(similarity: torch.Tensor, relevant: Sequence[Relevant]) -> torch.Tensor:
    """Best (0-based) rank of a relevant document per query, ``(Nq,)`` long."""
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be (Nq, Nd), got shape {tuple(similarity.shape)}")
    nq, nd = similarity.shape
    if len(relevant) != nq:
        raise ValueError(f"{len(relevant)} relevant entries for {nq} queries")
    sim = similarity.float()
    doc_index = torch.arange(nd)
    ranks = torch.empty(nq, dtype=torch.long)
    for q in range(nq):
        rel = [relevant[q]] if isinstance(relevant[q], int) else sorted(set(relevant[q]))
        if not rel or any(not 0 <= int(d) < nd for d in rel):
            raise ValueError(f"query {q}: relevant documents {rel} not within [0, {nd})")
        row = sim[q]
        best = nd
        for d in rel:
            s = row[d]
            rank = int((row > s).sum()) + int(((row == s) & (doc_index < d)).sum())
            best = min(best, rank)
        ranks[q] = best
    return ranks


def recall_at_k(
    similarity: torch.Tensor, relevant: Sequence[Relevant], ks: Sequence[int] = (1, 5, 10)
) -> Dict[str, float]:
    """``{"R@1": ..., "R@5": ..., "R@10": ..., "mean_rank": ...}`` (fractions in [0, 1]).

    ``mean_rank`` is 1-based. A ``k`` above the number of documents gives recall 1.
    """
    if any(k <= 0 for k in ks):
        raise ValueError(f"k must be positive, got {list(ks)}")
    ranks = ranks_of_relevant(similarity, relevant)
    if len(ranks) == 0:
        raise ValueError("no queries")
    out = {f"R@{k}": float((ranks < k).float().mean()) for k in ks}
    out["mean_rank"] = float((ranks + 1).float().mean())
    return out


def group_by_text(texts: Sequence[str]) -> tuple[List[str], List[int], List[List[int]]]:
    """``(unique texts, text index per item, item indices per unique text)``, first-seen order.

    For speech->text, the relevant document of utterance ``i`` is ``text_index[i]``; for
    text->speech, the relevant utterances of unique text ``j`` are ``items[j]``.
    """
    unique: Dict[str, int] = {}
    text_index, items = [], []
    for i, t in enumerate(texts):
        if t not in unique:
            unique[t] = len(unique)
            items.append([])
        text_index.append(unique[t])
        items[unique[t]].append(i)
    return list(unique), text_index, items
