"""Decode-time scorers by name: the beam-search counterpart of :mod:`espnet_llm_plugin.registry`.

``Speech2TextWithScorers`` asks this table which scorers the decode options switch on and
adds each to ESPnet's beam search with its weight. A scorer is one file holding a builder
and one row here (or, outside this package, one :func:`register_decode_scorer` call)::

    def build_decode_scorer(ctx: DecodeScorerContext, conf: dict) -> ScorerAddition: ...

The decode YAML reaches any registered scorer through ``scorers`` (name -> ``weight`` and
``conf``, the builder's keywords)::

    scorers:
      my_lm: {weight: 0.3, conf: {path: exp/my_lm}}

The built-in scorers also keep their flat keys (``hf_lm_path``/``hf_lm_weight``,
``knnlm_*``, ``no_repeat_ngram_size``), which :func:`builtin_scorer_confs` turns into rows
of the same form. Like ``registry.py``, the table holds import paths, so reading it imports
no model code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple


@dataclass
class DecodeScorerContext:
    """What a builder may use: the ASR model's token list, the device, the model and
    ESPnet's beam search (``scorers``/``weights``), and all decode options."""

    token_list: List[str]
    device: str
    asr_model: Any
    beam_search: Any
    options: Any  # decoding.speech2text.ExtraDecodingOptions


@dataclass
class ScorerAddition:
    """A built scorer. ``replaces``: the name of a beam-search scorer whose place (and weight)
    it takes instead of being added (kNN-LM over the LLM decoder's own distribution)."""

    scorer: Any
    replaces: Optional[str] = None
    # per-utterance hooks the Speech2Text calls, e.g. {"units": scorer.set_query_context}
    hooks: Dict[str, Callable[[Any], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodeScorer:
    """One registered decode-time scorer: ``name`` (the beam-search key and the ``scorers``
    key of the decode YAML), ``target`` (``"module:function"`` of its builder), ``summary``."""

    name: str
    target: str
    summary: str

    def build(self, ctx: DecodeScorerContext, conf: Mapping[str, Any]) -> ScorerAddition:
        module_name, _, attr = self.target.partition(":")
        builder = getattr(importlib.import_module(module_name), attr)
        try:
            out = builder(ctx, **dict(conf))
        except TypeError as e:
            if "unexpected keyword" in str(e) or "missing" in str(e):
                raise ValueError(f"decode scorer '{self.name}': bad conf {dict(conf)}: {e}") from None
            raise
        return out if isinstance(out, ScorerAddition) else ScorerAddition(out)


DECODE_SCORERS: Dict[str, DecodeScorer] = {
    s.name: s
    for s in (
        DecodeScorer(
            "no_repeat_ngram",
            "espnet_llm_plugin.decoding.no_repeat_ngram:build_decode_scorer",
            "forbids repeating any n-gram of the hypothesis (conf: size)",
        ),
        DecodeScorer(
            "hf_lm",
            "espnet_llm_plugin.retrieval.hf_lm_scorer:build_decode_scorer",
            "shallow fusion with a Hugging Face causal LM over the ASR token list (conf: path)",
        ),
        DecodeScorer(
            "knnlm",
            "espnet_llm_plugin.retrieval.knnlm_decoding:build_decode_scorer",
            "kNN-LM: a datastore's neighbours interpolated with an LM (conf: the knnlm_* options)",
        ),
    )
}


def register_decode_scorer(name: str, target: str, summary: str = "") -> None:
    """Add a decode-time scorer (``target``: ``"module:function"`` of its builder); refuses a
    name that is taken by another target (registering the same one again is a no-op)."""
    known = DECODE_SCORERS.get(name)
    if known is not None and known.target != target:
        raise ValueError(f"decode scorer '{name}' is registered already (as {known.target})")
    DECODE_SCORERS[name] = DecodeScorer(name, target, summary)


def get_decode_scorer(name: str) -> DecodeScorer:
    try:
        return DECODE_SCORERS[name]
    except KeyError:
        raise ValueError(
            f"unknown decode scorer '{name}' (decode config key scorers); registered: "
            f"{', '.join(sorted(DECODE_SCORERS))}"
        ) from None


def builtin_scorer_confs(options: Any) -> List[Tuple[str, float, Dict[str, Any]]]:
    """``(name, weight, conf)`` for the built-in scorers that ``options``' flat keys switch on,
    in the order they join the beam search."""
    rows: List[Tuple[str, float, Dict[str, Any]]] = []
    if options.no_repeat_ngram_size > 0:
        rows.append(("no_repeat_ngram", 1.0, {"size": options.no_repeat_ngram_size}))
    if options.hf_lm_path and options.hf_lm_weight != 0:
        rows.append(("hf_lm", options.hf_lm_weight, {"path": options.hf_lm_path}))
    if options.knnlm_datastore:
        rows.append(("knnlm", options.knnlm_weight, {}))  # reads the knnlm_* options itself
    return rows


def scorer_confs(options: Any) -> List[Tuple[str, float, Dict[str, Any]]]:
    """Built-in rows, then the decode YAML's ``scorers`` mapping (each ``{weight, conf}``)."""
    rows = builtin_scorer_confs(options)
    taken = {name for name, _, _ in rows}
    for name, spec in (options.scorers or {}).items():
        get_decode_scorer(name)
        if name in taken:
            raise ValueError(f"decode scorer '{name}' is set twice: by its own keys and under scorers")
        if not isinstance(spec, Mapping) or set(spec) - {"weight", "conf"} or "weight" not in spec:
            raise ValueError(f"decode config scorers.{name} must be a mapping with weight (and conf), got {spec!r}")
        weight = spec["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"decode config scorers.{name}.weight must be a number, got {weight!r}")
        conf = spec.get("conf") or {}
        if not isinstance(conf, Mapping):
            raise ValueError(f"decode config scorers.{name}.conf must be a mapping, got {conf!r}")
        rows.append((name, float(weight), dict(conf)))
    return rows
