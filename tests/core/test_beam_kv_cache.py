"""Beam KV cache: LiveCaches (grouping of states, recompute of missing caches, dropping old
steps) and select_cache_rows (row selection fused with the next append, parent left intact)."""

import gc

import pytest

from espnet_llm_plugin.core.beam_kv_cache import CacheState, LiveCaches


class FakeCache:  # any object: LiveCaches only keeps references
    pass


def test_group_keeps_live_steps_and_recomputes_missing():
    live = LiveCaches()
    old, new = FakeCache(), FakeCache()
    old_ref, new_ref = live.remember(old, 2), live.remember(new, 3)
    del old, new
    states = [CacheState(new_ref, 0, 3), CacheState(new_ref, 1, 3), None]
    groups = live.group(states)
    assert list(groups) == [(id(new_ref()), 3), (-1, -1)]
    assert groups[(id(new_ref()), 3)][1] == [0, 1] and groups[(-1, -1)] == (None, [2])
    gc.collect()
    assert old_ref() is None  # the step-2 cache was dropped: only step 3 can be extended
    assert new_ref() is not None


def test_prefix_len_sends_complete_states_to_recompute():
    live = LiveCaches()
    cache = FakeCache()
    ref = live.remember(cache, 4)
    assert list(live.group([CacheState(ref, 0, 4)], prefix_len=5)) == [(id(cache), 4)]
    assert live.group([CacheState(ref, 0, 4)], prefix_len=4) == {(-1, -1): (None, [0])}
    live.clear()
    del cache
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- select_cache_rows
def _dynamic_cache(batch: int, length: int, layers: int = 2, seed: int = 0):
    """A DynamicCache of ``layers`` attention layers with K/V ``(batch, 2, length, 4)``."""
    import torch
    from transformers import DynamicCache

    gen = torch.Generator().manual_seed(seed)
    cache = DynamicCache()
    for i in range(layers):
        cache.update(
            torch.randn(batch, 2, length, 4, generator=gen), torch.randn(batch, 2, length, 4, generator=gen), i
        )
    return cache


def test_selected_rows_then_update_equal_gather_and_concatenate():
    """One copy per step (RowSelectedLayer) gives exactly ``cat([kv[rows], new])``."""
    import torch

    from espnet_llm_plugin.core.beam_kv_cache import select_cache_rows

    parent = _dynamic_cache(3, 5)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in parent.layers]
    rows = [2, 0, 0, 1]
    child = select_cache_rows(parent, rows)
    assert child.get_seq_length() == 5
    new_k, new_v = torch.randn(4, 2, 1, 4), torch.randn(4, 2, 1, 4)
    for i, (k, v) in enumerate(before):
        out_k, out_v = child.update(new_k, new_v, i)
        assert torch.equal(out_k, torch.cat([k[rows], new_k], dim=2))
        assert torch.equal(out_v, torch.cat([v[rows], new_v], dim=2))
    assert child.get_seq_length() == 6
    # the parent is only read: its other hypotheses can still be extended from it
    for layer, (k, v) in zip(parent.layers, before):
        assert torch.equal(layer.keys, k) and torch.equal(layer.values, v)


def test_selection_is_applied_when_read_and_composes_without_update():
    import torch

    from espnet_llm_plugin.core.beam_kv_cache import select_cache_rows

    parent = _dynamic_cache(3, 4)
    k0 = parent.layers[0].keys.clone()
    twice = select_cache_rows(select_cache_rows(parent, [2, 1]), [1, 1, 0])  # = parent rows [1, 1, 2]
    assert torch.equal(twice.layers[0].keys, k0[[1, 1, 2]])  # reading applies the pending rows
    same = select_cache_rows(parent, [0, 1, 2])  # identity: no gather, still a new cache
    out_k, _ = same.update(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4), 0)
    assert torch.equal(out_k[:, :, :4], k0) and torch.equal(parent.layers[0].keys, k0)
    with pytest.raises(ValueError, match="RowSelectedLayer.update: 2 new rows for a cache of 3"):
        same.update(torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 4), 1)


def test_sliding_window_layers_are_gathered_now():
    """Layers other than plain DynamicLayer keep their class (their update differs)."""
    import torch
    from transformers.cache_utils import DynamicSlidingWindowLayer

    from espnet_llm_plugin.core.beam_kv_cache import select_cache_rows

    parent = _dynamic_cache(2, 3, layers=1)
    layer = DynamicSlidingWindowLayer(sliding_window=8)
    layer.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    parent.layers.append(layer)
    child = select_cache_rows(parent, [1, 1])
    assert type(child.layers[1]) is DynamicSlidingWindowLayer and child.layers[1] is not layer
    assert torch.equal(child.layers[1].keys, layer.keys[[1, 1]])
    assert layer.keys.size(0) == 2
