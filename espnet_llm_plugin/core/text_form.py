"""The text form the LLM reads and writes, and the way back to the recipe's form.

ESPnet recipes keep transcripts upper case without punctuation, a form a pretrained LLM has
rarely seen (SmolLM2-135M word perplexity on the demo text: UPPER 12,300, lower 972, sentence
case 827). Every component that feeds text to an LLM (LLM-ASR, HfLmScorer, kNN-LM, rescoring)
maps recipe text with :meth:`TextForm.to_llm` and maps what the LLM produced back with
:meth:`TextForm.to_recipe` before scoring, so WER compares recipe-form text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

from espnet_llm_plugin.core.llm_usage import llm_usage_path, usage_section

CASES = ("as_is", "lower", "upper", "sentence")
PUNCTUATIONS = ("keep", "strip", "final_period")
RECIPE_CASES = ("as_is", "lower", "upper")

# The English pronoun I and its contractions stay capitalised in sentence case.
_PRONOUN_I = re.compile(r"(?<![\w'])i(?=(?:'(?:m|ll|ve|d))?(?![\w']))")
# A letter that starts a sentence: the first one of the text, or the first after . ! ?
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([^\W\d_])")
_SENTENCE_END = (".", "!", "?")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _strip_punctuation(text: str) -> str:
    """Drop punctuation, keeping an apostrophe or hyphen between two word characters
    (``don't``, ``well-known``), which is spelling rather than punctuation."""
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        if _is_punct(ch):
            inner = ch in "'-" and 0 < i < n - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            if not inner:
                out.append(" ")
                continue
        out.append(ch)
    return "".join(out)


def _normalise_space(text: str) -> str:
    return " ".join(text.split())


def sentence_case(text: str) -> str:
    """English sentence case: lower case, first letter of each sentence and the pronoun I
    (I, I'm, I'll, I've, I'd) upper case."""
    s = text.lower()
    s = _PRONOUN_I.sub("I", s)
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), s)


@dataclass(frozen=True)
class TextForm:
    """What the LLM reads and writes, and the recipe's form to map back to.

    Attributes:
        case: the LLM's case: ``as_is`` | ``lower`` | ``upper`` | ``sentence``.
        punctuation: applied to what the LLM reads: ``keep``; ``strip`` (drop punctuation);
            ``final_period`` (keep, and end a non-empty text with ``.`` unless it already
            ends a sentence).
        recipe_case: the case of the recipe's files and of scoring: ``as_is`` | ``lower`` |
            ``upper``. With a non-identity ``case`` set this, or decoded text keeps the LLM's case.
    """

    case: str = "as_is"
    punctuation: str = "keep"
    recipe_case: str = "as_is"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("case", CASES),
            ("punctuation", PUNCTUATIONS),
            ("recipe_case", RECIPE_CASES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"text_form.{name}: {value!r} is not one of {list(allowed)}")

    @property
    def is_identity(self) -> bool:
        """True when both mappings leave text unchanged (up to whitespace)."""
        return self.case == "as_is" and self.punctuation == "keep" and self.recipe_case == "as_is"

    def to_llm(self, text: str) -> str:
        """Recipe text -> the form the LLM reads (whitespace normalised)."""
        s = text
        if self.punctuation == "strip":
            s = _strip_punctuation(s)
        s = _normalise_space(s)
        if self.case == "lower":
            s = s.lower()
        elif self.case == "upper":
            s = s.upper()
        elif self.case == "sentence":
            s = sentence_case(s)
        if self.punctuation == "final_period" and s and not s.endswith(_SENTENCE_END):
            s += "."
        return s

    def to_recipe(self, text: str) -> str:
        """LLM text -> the recipe's form: punctuation the LLM form added (or that the LLM
        was taught not to write) removed, ``recipe_case`` applied, whitespace normalised."""
        s = text
        if self.punctuation == "strip":
            s = _strip_punctuation(s)
        s = _normalise_space(s)
        if self.punctuation == "final_period" and s.endswith("."):
            s = s[:-1].rstrip()
        if self.recipe_case == "lower":
            s = s.lower()
        elif self.recipe_case == "upper":
            s = s.upper()
        return s

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]], where: str) -> "TextForm":
        """Build from a config mapping; unknown keys or values are errors naming ``where``."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: text_form must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where}: unknown text_form key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        try:
            return cls(**{k: str(v) for k, v in d.items()})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


def infer_recipe_case(texts: Iterable[str]) -> str:
    """The case of a recipe's transcripts: ``upper`` (no lower-case letter), ``lower`` (no
    upper-case letter) or ``as_is`` (mixed, or no cased letter at all)."""
    has_upper = has_lower = False
    for text in texts:
        has_upper = has_upper or any(c.isupper() for c in text)
        has_lower = has_lower or any(c.islower() for c in text)
        if has_upper and has_lower:
            return "as_is"
    if has_upper:
        return "upper"
    return "lower" if has_lower else "as_is"


def resolve_text_form(
    value: Optional[Mapping[str, Any]],
    llm_dir: Optional[Union[str, Path]],
    where: str,
) -> TextForm:
    """The text form a component uses.

    The LLM's measured default (``llm_usage.json``'s ``text_form``) with the explicit
    ``value``'s keys laid over it, so a config can name only ``recipe_case``; without either,
    the identity form (today's behaviour).
    """

    merged: Dict[str, Any] = {}
    base = usage_section(llm_dir, "text_form")
    if base is not None:
        merged.update(TextForm.from_dict(base, f"{llm_usage_path(llm_dir)}: text_form").to_dict())
    if value is not None:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: text_form must be a mapping, got {type(value).__name__}")
        TextForm.from_dict(value, where)  # validates keys and values, naming ``where``
        merged.update(value)
    return TextForm.from_dict(merged, where)
