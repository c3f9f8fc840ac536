"""LiveCaches: grouping of beam states by cache, recompute of missing caches, dropping old steps."""

import gc

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
