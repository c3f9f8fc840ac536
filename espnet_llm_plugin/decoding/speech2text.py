"""ESPnet's ``Speech2Text`` plus our decoding-time scorers.

ESPnet's ``Speech2Text`` builds its beam search in ``__init__`` and takes no extra scorers.
``Speech2TextWithScorers`` adds them afterwards to the beam search's ``scorers``,
``full_scorers`` and ``weights``. All of ours are batch scorers, so ESPnet's choice of
``BatchBeamSearch`` stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict

from espnet_llm_plugin.quiet import quiet_espnet_import

with quiet_espnet_import():
    from espnet2.bin.asr_inference import Speech2Text

from espnet_llm_plugin.decoding.no_repeat_ngram import NoRepeatNgramScorer

logger = logging.getLogger(__name__)


@dataclass
class ExtraDecodingOptions:
    """Options that ESPnet's inference does not have (YAML keys of the decode config)."""

    no_repeat_ngram_size: int = 0  # 0: off

    @classmethod
    def pop_from(cls, config: Dict[str, Any]) -> "ExtraDecodingOptions":
        """Take our keys out of a decode-config mapping (ESPnet would reject them)."""
        kwargs = {k: config.pop(k) for k in list(config) if k in cls.__dataclass_fields__}
        return cls(**kwargs)


class Speech2TextWithScorers(Speech2Text):
    """``Speech2Text(**espnet_kwargs)`` with ``extra`` scorers added to its beam search."""

    extra = ExtraDecodingOptions()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bs = self.beam_search
        if bs is None:
            return
        if self.extra.no_repeat_ngram_size > 0:
            scorer = NoRepeatNgramScorer(self.extra.no_repeat_ngram_size, bs.n_vocab)
            self.add_scorer("no_repeat_ngram", scorer, 1.0)

    def add_scorer(self, name: str, scorer: Any, weight: float) -> None:
        bs = self.beam_search
        if name in bs.scorers:
            raise ValueError(f"a beam-search scorer named '{name}' exists already")
        bs.scorers[name] = scorer
        bs.full_scorers[name] = scorer
        bs.weights[name] = weight
        logger.info("added beam-search scorer %s (weight %s)", name, weight)


def speech2text_class(extra: ExtraDecodingOptions) -> type:
    """A ``Speech2TextWithScorers`` subclass bound to ``extra`` (ESPnet constructs the class
    itself, from keyword arguments it knows, so the options travel on the class)."""
    return type("Speech2TextWithScorers", (Speech2TextWithScorers,), {"extra": extra})
