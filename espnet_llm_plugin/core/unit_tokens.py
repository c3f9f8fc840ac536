"""How discrete speech units are spelled inside a causal LM's vocabulary.

One convention shared by the speech+text LM, the multi-modal datastore keys and the n-best
rescorer: unit ``i`` is the added token ``<unit_i>``, and a span of speech is wrapped in
``<speech>`` ... ``</speech>`` so the LM can tell where speech ends and text starts::

    <speech><unit_12><unit_7><unit_7></speech> the crew docked at vesta

Tokens are added to the tokenizer as special tokens, so each is exactly one id and text
tokenisation is unchanged.
"""

from __future__ import annotations

from typing import List, Sequence

SPEECH_START = "<speech>"
SPEECH_END = "</speech>"
UNIT_TOKEN_FORMAT = "<unit_{}>"


def unit_token(unit: int) -> str:
    """The token for unit id ``unit`` (``<unit_12>``)."""
    return UNIT_TOKEN_FORMAT.format(int(unit))


def unit_token_list(num_units: int) -> List[str]:
    """All added tokens for a model with ``num_units`` units, in id order, markers first."""
    if num_units <= 0:
        raise ValueError(f"num_units must be positive, got {num_units}")
    return [SPEECH_START, SPEECH_END] + [unit_token(i) for i in range(num_units)]


def speech_span(units: Sequence[int], num_units: int | None = None) -> str:
    """``<speech><unit_a><unit_b>...</speech>`` for a unit sequence.

    Raises:
        ValueError: a unit id that is negative or not below ``num_units`` (when given).
    """
    for u in units:
        if u < 0 or (num_units is not None and u >= num_units):
            raise ValueError(
                f"unit id {u} out of range [0, {num_units})" if num_units is not None else f"unit id {u} is negative"
            )
    return SPEECH_START + "".join(unit_token(u) for u in units) + SPEECH_END
