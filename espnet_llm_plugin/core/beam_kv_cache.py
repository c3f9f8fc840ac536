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
import functools
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from transformers.cache_utils import DynamicLayer


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

    Plain attention layers (``DynamicLayer``) are wrapped in a ``RowSelectedLayer`` (see
    :func:`row_selected_layer_class`): the row selection waits for the layer's next ``update``,
    which writes the selected rows and the new token's K/V into one new tensor (one copy of the
    cache per step, where gathering now and appending with ``torch.cat`` takes two). Other
    layers (e.g. sliding-window ones) are shallow-copied and gathered now (``DynamicLayer.update``
    rebinds its tensors rather than writing in place). Either way the parent's tensors are only
    read, so it stays valid for its other hypotheses.
    """
    RowSelectedLayer = row_selected_layer_class()
    new = copy.copy(cache)
    new.layers = []
    indices: Dict[Tuple[torch.device, int], Optional[torch.Tensor]] = {}  # None: identity

    def index_on(layer: Any, keys: torch.Tensor) -> Optional[torch.Tensor]:
        # rows of the layer's own batch: a pending selection is not applied yet (see below)
        batch = layer.batch_size() if isinstance(layer, RowSelectedLayer) else keys.size(0)
        key = (keys.device, batch)
        if key not in indices:
            same = rows == list(range(batch))
            indices[key] = None if same else torch.tensor(rows, dtype=torch.long, device=keys.device)
        return indices[key]

    for layer in cache.layers:
        if type(layer) in (DynamicLayer, RowSelectedLayer) and layer.is_initialized:
            keys = layer._keys if isinstance(layer, RowSelectedLayer) else layer.keys
            new.layers.append(RowSelectedLayer(layer, index_on(layer, keys)))
            continue
        layer = copy.copy(layer)
        keys = getattr(layer, "keys", None)
        if isinstance(keys, torch.Tensor) and keys.numel() > 0:
            index = index_on(layer, keys)
            if index is not None:
                layer.batch_select_indices(index)
        new.layers.append(layer)
    return new


@functools.lru_cache(maxsize=None)
def row_selected_layer_class() -> type:
    """The class ``RowSelectedLayer``, defined on first use (transformers is imported lazily)."""

    class RowSelectedLayer(DynamicLayer):
        """A ``DynamicLayer`` holding ``rows`` of a parent layer, selected at the next ``update``.

        ``update`` writes the parent's K/V rows ``(n, H, L, Dh)`` and the new tokens'
        ``(n, H, l, Dh)`` into one new ``(n, H, L + l, Dh)`` tensor. Reading ``keys``/``values``
        before that applies the selection first, so any other use of the layer sees the
        selected rows. The parent's tensors are never written.

        Args:
            parent: an initialised ``DynamicLayer`` (or ``RowSelectedLayer``).
            rows: ``(n,)`` long tensor of parent rows on the parent's device; None: all, in order.
        """

        def __init__(self, parent: Any, rows: Optional[torch.Tensor]) -> None:
            super().__init__()
            if isinstance(parent, RowSelectedLayer):
                keys, values, pending = parent._keys, parent._values, parent._rows
                if pending is not None:  # selecting twice without an update: compose
                    rows = pending if rows is None else pending.index_select(0, rows)
            else:
                keys, values = parent.keys, parent.values
            self._keys, self._values, self._rows = keys, values, rows
            self.device = keys.device
            self.is_initialized = True

        # HF code reads and rebinds ``keys``/``values``: the pending selection is applied first
        @property
        def keys(self) -> Optional[torch.Tensor]:
            self._apply_rows()
            return self._keys

        @keys.setter
        def keys(self, value: Optional[torch.Tensor]) -> None:
            self._apply_rows()
            self._keys = value

        @property
        def values(self) -> Optional[torch.Tensor]:
            self._apply_rows()
            return self._values

        @values.setter
        def values(self, value: Optional[torch.Tensor]) -> None:
            self._apply_rows()
            self._values = value

        def _apply_rows(self) -> None:
            rows = getattr(self, "_rows", None)
            if rows is not None:
                self._rows = None
                self._keys = self._keys.index_select(0, rows)
                self._values = self._values.index_select(0, rows)

        def batch_size(self) -> int:
            """Rows this layer holds (after its pending selection)."""
            return self._keys.size(0) if self._rows is None else int(self._rows.numel())

        def get_seq_length(self) -> int:
            # the selection does not change the length: do not apply it here
            if not self.is_initialized or self._keys is None or self._keys.numel() == 0:
                return 0
            return self._keys.shape[-2]

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> Tuple[torch.Tensor, torch.Tensor]:
            """Append ``(n, H, l, Dh)`` new K/V to the selected rows; returns the full K/V."""
            if key_states.size(0) != self.batch_size():
                raise ValueError(
                    f"RowSelectedLayer.update: {key_states.size(0)} new rows for a cache of "
                    f"{self.batch_size()} selected rows"
                )
            rows, self._rows = self._rows, None
            self._keys = _select_and_append(self._keys, rows, key_states)
            self._values = _select_and_append(self._values, rows, value_states)
            return self._keys, self._values

    return RowSelectedLayer


def _select_and_append(old: torch.Tensor, rows: Optional[torch.Tensor], new: torch.Tensor) -> torch.Tensor:
    """``cat([old[rows], new], dim=-2)`` with one copy: ``old (B, H, L, Dh)``, ``new (n, H, l, Dh)``."""
    L = old.size(-2)
    out = old.new_empty((new.size(0), *old.shape[1:-2], L + new.size(-2), old.size(-1)))
    if rows is None:
        out[..., :L, :].copy_(old)
    else:
        torch.index_select(old, 0, rows, out=out[..., :L, :])
    out[..., L:, :].copy_(new)
    return out


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
