"""KV-cache bookkeeping for Hugging Face causal LMs scored inside ESPnet's beam search.

Shared by the LLM-ASR decoder (``asr/llm_decoder.py``) and the HF LM scorer
(``retrieval/hf_lm_scorer.py``). Each beam step scores all hypotheses in one batched cache;
a hypothesis' state is a weak reference to that cache plus its row and the number of tokens
the cache holds. :class:`LiveCaches` keeps the caches of the steps that may still be extended
alive, and drops those of earlier steps (only finished hypotheses refer to them: when one is
scored again its cache is gone and the caller recomputes it).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch


@dataclass(frozen=True)
class CacheState:
    """Beam-search state of one hypothesis.

    Attributes:
        cache_ref: weak reference to the batched KV cache holding this hypothesis.
        row: the hypothesis' row in that cache.
        n_tokens: how many tokens of the hypothesis (``yseq``) the cache already holds.
    """

    cache_ref: "weakref.ref[Any]"
    row: int
    n_tokens: int


def select_cache_rows(cache: Any, rows: List[int]) -> Any:
    """A new cache holding ``rows`` of ``cache`` (repeats allowed); ``cache`` is left untouched.

    Layers are shallow-copied first: ``DynamicLayer.update`` rebinds its tensors (``torch.cat``)
    rather than writing in place, so the parent cache stays valid for its other hypotheses.
    """
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    keys = [layer.keys for layer in cache.layers if getattr(layer, "keys", None) is not None]
    if keys and rows != list(range(keys[0].size(0))):  # identity: no copy needed
        new.batch_select_indices(torch.tensor(rows, dtype=torch.long, device=keys[0].device))
    return new


class LiveCaches:
    """The caches of the current beam steps, keyed by how many tokens they hold."""

    def __init__(self) -> None:
        self._by_length: Dict[int, List[Any]] = {}

    def clear(self) -> None:
        """Forget every cache (a new utterance, or a new context)."""
        self._by_length.clear()

    def remember(self, cache: Any, n_tokens: int) -> "weakref.ref[Any]":
        """Keep ``cache`` alive while its step may still be extended; states get a weak ref."""
        self._by_length.setdefault(n_tokens, []).append(cache)
        return weakref.ref(cache)

    def group(
        self, states: Sequence[Optional[CacheState]], prefix_len: Optional[int] = None
    ) -> Dict[Tuple[int, int], Tuple[Any, List[int]]]:
        """Hypotheses sharing a cache object and a length, to be scored together.

        Returns ``{(id(cache), n_tokens): (cache, [hypothesis index, ...])}``; hypotheses whose
        cache is gone (or, with ``prefix_len`` given, already holds all ``prefix_len`` tokens)
        go to key ``(-1, -1)`` with cache None (recompute). Caches of steps before the oldest live state are dropped.
        """
        groups: Dict[Tuple[int, int], Tuple[Any, List[int]]] = {}
        live = []
        for i, s in enumerate(states):
            cache = None if s is None else s.cache_ref()
            if cache is not None:
                live.append(s.n_tokens)
                if prefix_len is not None and s.n_tokens >= prefix_len:
                    cache = None  # nothing new to feed (a prefix scored again): recompute
            key = (-1, -1) if cache is None else (id(cache), s.n_tokens)
            groups.setdefault(key, (cache, []))[1].append(i)
        if live:
            oldest = min(live)
            for k in [k for k in self._by_length if k < oldest]:
                del self._by_length[k]
        return groups
