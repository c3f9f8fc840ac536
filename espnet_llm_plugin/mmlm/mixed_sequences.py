"""Training sequences for a speech+text LM from a units file and a Kaldi ``text`` file.

Three kinds of sequence (arXiv 2406.09618, 2404.01616: one LM over text and unit tokens):

* ``text``:          ``the crew docked at vesta``
* ``unit_to_text``:  ``<speech><unit_12><unit_7></speech> the crew docked at vesta``
* ``text_to_unit``:  ``the crew docked at vesta <speech><unit_12><unit_7></speech>``

Each paired utterance gives one sequence whose kind is drawn (seeded) with probabilities
proportional to :class:`MixRatios`; a ratio of 0 disables a kind. Extra text-only sentences
(e.g. the LM corpus) can be appended as ``text`` sequences.

Sequences are strings in the shared unit-token convention, so any tokenizer that has the unit
tokens (see :mod:`~espnet_llm_plugin.mmlm.unit_vocab`) encodes each unit as exactly one id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from espnet_llm_plugin.core.unit_tokens import speech_span
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp
from espnet_llm_plugin.fileio.unit_file import read_units

KINDS = ("text", "unit_to_text", "text_to_unit")


class UnitTextMismatchError(DataDirError):
    """The units file and the text file do not hold the same utterances."""


@dataclass(frozen=True)
class PairedUtterance:
    """One utterance: its id, unit sequence and transcript."""

    utt_id: str
    units: Tuple[int, ...]
    text: str


@dataclass
class MixRatios:
    """Relative weights of the three sequence kinds (need not sum to 1)."""

    text: float = 1.0
    unit_to_text: float = 1.0
    text_to_unit: float = 1.0

    def validate(self) -> None:
        values = [self.text, self.unit_to_text, self.text_to_unit]
        if any(v < 0 for v in values) or sum(values) <= 0:
            raise ValueError(f"mix ratios must be >= 0 with a positive sum, got {self}")

    @classmethod
    def parse(cls, spec: str) -> "MixRatios":
        """``"text=1,unit_to_text=2,text_to_unit=0"`` (missing kinds: 0)."""
        values = {k: 0.0 for k in KINDS}
        for part in spec.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in values:
                raise ValueError(f"mix ratio {part!r}: expected KIND=WEIGHT with KIND in {KINDS}")
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"mix ratio {part!r}: {value!r} is not a number") from None
        ratios = cls(**values)
        ratios.validate()
        return ratios


def read_text(path: Union[str, Path]) -> Dict[str, str]:
    """Kaldi ``text``: ``{utt_id: transcript}`` (empty transcripts kept as "")."""
    return {k: v.strip() for k, v in read_scp(path, allow_empty_value=True).items()}


def pair_units_with_text(
    units: Dict[str, Sequence[int]],
    texts: Dict[str, str],
    units_path: str = "units",
    text_path: str = "text",
    skip_empty_text: bool = True,
) -> List[PairedUtterance]:
    """Join units and transcripts by utterance id (in the units file's order).

    Raises:
        UnitTextMismatchError: ids in one file and not the other (the message names them).
    """
    only_units = [u for u in units if u not in texts]
    only_text = [u for u in texts if u not in units]
    if only_units or only_text:
        parts = []
        if only_units:
            parts.append(f"{len(only_units)} in {units_path} but not in {text_path} (e.g. {', '.join(only_units[:5])})")
        if only_text:
            parts.append(f"{len(only_text)} in {text_path} but not in {units_path} (e.g. {', '.join(only_text[:5])})")
        raise UnitTextMismatchError("utterance ids differ: " + "; ".join(parts))
    out = []
    for utt, seq in units.items():
        text = texts[utt]
        if skip_empty_text and not text:
            continue  # non-speech segments: nothing to pair with
        if not seq:
            continue  # too short to give a unit
        out.append(PairedUtterance(utt, tuple(int(u) for u in seq), text))
    return out


def load_pairs(
    units_path: Union[str, Path], text_path: Union[str, Path], num_units: Optional[int] = None
) -> List[PairedUtterance]:
    """:func:`read_units` + :func:`read_text` + :func:`pair_units_with_text`."""
    return pair_units_with_text(
        read_units(units_path, num_units), read_text(text_path), str(units_path), str(text_path)
    )


def format_sequence(kind: str, units: Sequence[int], text: str, num_units: Optional[int] = None) -> str:
    """One sequence of ``kind`` (see the module docstring)."""
    if kind == "text":
        return text
    span = speech_span(units, num_units)
    if kind == "unit_to_text":
        return f"{span} {text}"
    if kind == "text_to_unit":
        return f"{text} {span}"
    raise ValueError(f"unknown sequence kind {kind!r}; expected one of {KINDS}")


def build_mixed_sequences(
    pairs: Sequence[PairedUtterance],
    ratios: MixRatios,
    seed: int = 0,
    num_units: Optional[int] = None,
    extra_texts: Sequence[str] = (),
    extra_units: Sequence[Sequence[int]] = (),
) -> List[Tuple[str, str]]:
    """``[(kind, sequence)]``: one per pair (kind drawn with ``ratios``), then ``extra_texts``
    (kind ``text``), then ``extra_units`` (kind ``units``: ``<speech>units</speech>`` alone,
    speech without transcripts, for adapting the LM to a domain's speech only).

    The draw uses ``random.Random(seed)`` in the pairs' order: same inputs -> same sequences.
    """
    ratios.validate()
    weights = [ratios.text, ratios.unit_to_text, ratios.text_to_unit]
    rng = random.Random(seed)
    out = []
    for p in pairs:
        kind = rng.choices(KINDS, weights=weights)[0]
        out.append((kind, format_sequence(kind, p.units, p.text, num_units)))
    out.extend(("text", t.strip()) for t in extra_texts if t.strip())
    out.extend(("units", speech_span(u, num_units)) for u in extra_units if len(u) > 0)
    return out
