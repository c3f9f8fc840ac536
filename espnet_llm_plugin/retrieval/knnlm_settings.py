"""kNN-LM settings: the library defaults, per-model overrides from ``llm_usage.json``, and
the caller's explicit values, merged in that order.

=================  ==========================================================================
key                meaning
=================  ==========================================================================
``window``         text tokens per datastore window (build time); a list gives several
                   scales, each event then has one key per scale
                   (:func:`espnet_llm_plugin.retrieval.document_store.scaled_windows`)
``stride``         step between window starts (build time), one per window; each key has at
                   least ``window - stride - 1`` tokens of left context once a document is
                   longer than one window
``k``              neighbours per query
``lambda``         weight of the kNN distribution in ``(1 - lambda) p_lm + lambda p_knn``
``temperature``    softmax temperature over ``-distance``, in units of the datastore's
                   distance scale (``temperature_unit: distance_scale``, the default: see
                   :func:`espnet_llm_plugin.retrieval.datastore.distance_scale`) or of the raw
                   distances (``absolute``)
``temperature_unit``  ``distance_scale`` | ``absolute``
=================  ==========================================================================

The defaults were measured with ``python -m espnet_llm_plugin.bin.knnlm_perplexity`` on
SmolLM2-135M-Instruct (its ``llm_usage.json`` text form and framing, last layer, CPU) over the
demo grammar (``espnet_llm_plugin.corpus.sentence_grammar``, seed 0): memories of 300
target-domain sentences or 60 passages; eval sets of 80 sentences from the memory
(``in_memory``), 80 target sentences not in it, 80 general-domain sentences, 80 passage
sentences read from their start (as decoding queries an utterance) and 20 held-out passages
read whole (the kNN-LM paper's setting). Token perplexities (base LM -> kNN-LM):

==========================  =========  ===============================  ===================
set                         LM alone   old: 20/20, k 16, l 0.25, T=1    defaults
==========================  =========  ===============================  ===================
sentence memory: in memory    563      5.64                             3.33
  target, not in memory       572      33.0                             9.10
  general domain              247      173                              171
passage memory: passages      175      29.5                             9.87
  passage sentences           470      23.1                             5.78
  target sentences            572      116                              42.1
==========================  =========  ===============================  ===================

* temperature: the best raw temperature follows the hidden states' magnitude (SmolLM2 layers
  -1 / 15 / 24: ~100 / 2,000 / 10,000) but not the memory's size, like the random-pair
  distance scale; 0.05 of it (~115 for the last layer) was best or within 3% for held-out
  text at every k and lambda; raw 1 was a hard 1-NN;
* k: 16 -> 64 -> 128 lowered held-out perplexity 13.1 -> 9.1 -> 8.4 (lambda 0.5); 64 keeps
  most of the gain at a quarter of 256's merge cost;
* lambda: in-domain text wants 0.75+, general-domain text 0.25; 0.5 costs each side <= 30%;
* windows (passage memory, k 64, lambda 0.5): long windows (64/32) serve long texts (held-out
  passages 10.7 vs 15.1 for 12/6) but hurt utterance-like queries (passage sentences 9.7 vs
  6.4); the scales 8/4 + 64/32 together beat both on both (9.9 and 5.9), at twice the keys.
  The old 20/20 was worse than either on both. Sentence memories barely care (a sentence fits
  one window).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from espnet_llm_plugin.core.llm_usage import llm_usage_path, usage_section

TEMPERATURE_UNITS = ("distance_scale", "absolute")
USAGE_KEY = "knnlm"
# JSON / config key -> dataclass field (``lambda`` is a Python keyword)
_KEYS = {
    "window": "window",
    "stride": "stride",
    "k": "k",
    "lambda": "lam",
    "temperature": "temperature",
    "temperature_unit": "temperature_unit",
}


@dataclass(frozen=True)
class KnnLmSettings:
    """Build-time (``window``, ``stride``) and query-time (``k``, ``lam``, ``temperature``,
    ``temperature_unit``) kNN-LM settings; see the module docstring."""

    window: Tuple[int, ...] = (8, 64)
    stride: Tuple[int, ...] = (4, 32)
    k: int = 64
    lam: float = 0.5
    temperature: float = 0.05
    temperature_unit: str = "distance_scale"

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _ints(self.window, "window"))
        object.__setattr__(self, "stride", _ints(self.stride, "stride"))
        if len(self.window) != len(self.stride):
            raise ValueError(
                f"knnlm needs one stride per window, got window {list(self.window)} and stride {list(self.stride)}"
            )
        for w, st in zip(self.window, self.stride):
            if w < 2:
                raise ValueError(f"knnlm window must be >= 2 tokens, got {w}")
            if not 1 <= st <= w:
                raise ValueError(f"knnlm stride must be in [1, window={w}], got {st}")
        if self.k < 1:
            raise ValueError(f"knnlm k must be >= 1, got {self.k}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"knnlm lambda must be in [0, 1], got {self.lam}")
        if not self.temperature > 0:
            raise ValueError(f"knnlm temperature must be > 0, got {self.temperature}")
        if self.temperature_unit not in TEMPERATURE_UNITS:
            raise ValueError(
                f"knnlm temperature_unit must be one of {list(TEMPERATURE_UNITS)}, got {self.temperature_unit!r}"
            )

    def to_dict(self) -> Dict[str, Any]:
        """The settings under their config keys (``lambda``, not ``lam``; one window/stride as
        a number, several as lists)."""
        d = asdict(self)
        for key in ("window", "stride"):
            d[key] = d[key][0] if len(d[key]) == 1 else list(d[key])
        return {key: d[field] for key, field in _KEYS.items()}

    def updated(self, values: Optional[Mapping[str, Any]], where: str) -> "KnnLmSettings":
        """These settings with ``values`` (config keys; None values ignored) laid over them.

        Raises:
            ValueError: an unknown key or a bad value, naming ``where``.
        """
        if not values:
            return self
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: kNN-LM settings must be a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - set(_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown kNN-LM setting(s) {unknown}; known: {sorted(_KEYS)}")
        kwargs = {_KEYS[k]: v for k, v in values.items() if v is not None}
        try:
            if "window" in kwargs:
                kwargs["window"] = _ints(kwargs["window"], "window")
                if "stride" not in kwargs:  # new windows overlap by half, as the defaults do
                    kwargs["stride"] = tuple(max(1, w // 2) for w in kwargs["window"])
            if "stride" in kwargs:
                kwargs["stride"] = _ints(kwargs["stride"], "stride")
            types = {"k": int, "lam": float, "temperature": float, "temperature_unit": str}
            for name, v in kwargs.items():
                if name in ("window", "stride"):
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    raise ValueError(f"{name} must be a {types[name].__name__}, got {v!r}")
                if types[name] is int and isinstance(v, float) and not v.is_integer():
                    raise ValueError(f"{name} must be an integer, got {v!r}")
                kwargs[name] = types[name](v)
            return replace(self, **kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


def _ints(value: Union[int, Sequence[int]], name: str) -> Tuple[int, ...]:
    """An int or a list of ints as a non-empty tuple of ints."""
    items = [value] if isinstance(value, (int, float, str)) else list(value)
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
            raise ValueError(f"{name} must be an integer or a list of integers, got {value!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return tuple(out)


DEFAULTS = KnnLmSettings()


def resolve_knnlm_settings(
    explicit: Optional[Mapping[str, Any]], llm_dir: Optional[Union[str, Path]], where: str
) -> KnnLmSettings:
    """The library :data:`DEFAULTS`, then the ``knnlm`` section of ``<llm_dir>/llm_usage.json``
    (the key encoder's / query LM's dir), then ``explicit`` (config keys, None = not given).

    Raises:
        ValueError: an unknown key or a bad value, naming the file or ``where``.
    """

    settings = DEFAULTS
    section = usage_section(llm_dir, USAGE_KEY)
    if section is not None:
        settings = settings.updated(section, f"{llm_usage_path(llm_dir)}: {USAGE_KEY}")
    return settings.updated(explicit, where)
