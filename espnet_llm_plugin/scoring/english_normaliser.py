"""English text normalisation for scoring, in the spirit of Whisper's normalised WER.

ESPnet references spell numbers out and split compounds (``IN TWENTY THIRTY SEVEN``,
``FAST SPINNING``), while Whisper and other pretrained models write ``in 2037`` and
``fast-spinning``. Scored as written, each such pair costs several errors that no listener
would count. :class:`EnglishScoringNormaliser` maps both sides to one form before scoring:

- lower case; punctuation dropped, hyphens and slashes split words (``fast-spinning`` ->
  ``fast spinning``), an apostrophe inside a word stays (``don't``);
- thousands separators dropped (``1,500`` -> ``1500``);
- spelled-out numbers become digits: cardinals (``two thousand and five`` -> ``2005``,
  ``one hundred twenty`` -> ``120``), year-style pairs (``twenty thirty seven`` -> ``2037``,
  ``nineteen oh five`` -> ``1905``), ``percent`` after a number or ``%`` -> `` percent``.

It is written for this project (not a copy of Whisper's normaliser) and covers what the demo
and LibriSpeech-style references hold; it does not map British to American spellings,
ordinals or currency. It is applied to references and hypotheses alike, so it can only merge
spellings, never make two different words equal.
"""

from __future__ import annotations

import re
import unicodedata
from typing import List, Optional, Tuple

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES) | {"hundred"}
_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PERCENT = re.compile(r"%")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or unicodedata.category(ch).startswith("S")


def _split_punctuation(text: str) -> str:
    """Punctuation and symbols -> spaces, except an apostrophe between two letters."""
    out = []
    for i, ch in enumerate(text):
        if ch == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha():
            out.append(ch)
        elif _is_punct(ch):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _two_digit(words: List[str], i: int) -> Tuple[Optional[int], int]:
    """A number below 100 starting at ``words[i]`` (``seven``, ``thirty``, ``thirty seven``);
    ``(value, next index)``, or ``(None, i)`` when ``words[i]`` does not start one."""
    w = words[i]
    if w in _UNITS:
        return _UNITS[w], i + 1
    if w in _TENS:
        if i + 1 < len(words) and words[i + 1] in _UNITS and _UNITS[words[i + 1]] < 10 and words[i + 1] != "zero":
            return _TENS[w] + _UNITS[words[i + 1]], i + 2
        return _TENS[w], i + 1
    return None, i


def _cardinal(words: List[str], i: int) -> Tuple[Optional[int], int]:
    """The longest cardinal starting at ``words[i]`` (``two thousand and five``), with an
    ``and`` allowed only where English puts it (after hundred/thousand, before a small number)."""
    total, current, j, any_word = 0, 0, i, False
    while j < len(words):
        w = words[j]
        if w == "and" and any_word and j + 1 < len(words) and (words[j + 1] in _UNITS or words[j + 1] in _TENS):
            if current % 100 != 0:
                break  # "twenty and five" is two numbers
            j += 1
            continue
        small, nxt = _two_digit(words, j)
        if small is not None:
            if current % 100 != 0 or (any_word and current == 0 and total == 0):
                break  # "twenty thirty": a second number starts here
            current += small
            j, any_word = nxt, True
            continue
        if w == "hundred" and any_word and 0 < current < 100:
            current *= 100
            j += 1
            continue
        if w in _SCALES and any_word and (current > 0):
            scale = _SCALES[w]
            if total and total < scale:
                break
            total += current * scale
            current = 0
            j += 1
            continue
        break
    if not any_word:
        return None, i
    return total + current, j


def _year(words: List[str], i: int) -> Tuple[Optional[int], int]:
    """``nineteen eighty four`` -> 1984, ``twenty thirty`` -> 2030, ``nineteen oh five`` ->
    1905, ``nineteen hundred`` -> 1900: a first half 10-99 then a second half 10-99, ``oh N``
    or ``hundred``."""
    first, j = _two_digit(words, i)
    if first is None or first < 10 or j >= len(words):
        return None, i
    if words[j] == "hundred" and not (j + 1 < len(words) and words[j + 1] in _NUMBER_WORDS | {"and"}):
        return first * 100, j + 1
    if words[j] == "oh" and j + 1 < len(words) and words[j + 1] in _UNITS and 0 < _UNITS[words[j + 1]] < 10:
        return first * 100 + _UNITS[words[j + 1]], j + 2
    second, k = _two_digit(words, j)
    if second is None or second < 10:
        return None, i
    return first * 100 + second, k


def spelled_numbers_to_digits(words: List[str]) -> List[str]:
    """Replace every run of number words in lower-case ``words`` by its digits."""
    out: List[str] = []
    i = 0
    while i < len(words):
        year, j = _year(words, i)
        if year is not None:
            out.append(str(year))
            i = j
            continue
        value, j = _cardinal(words, i)
        if value is not None:
            out.append(str(value))
            i = j
            continue
        out.append(words[i])
        i += 1
    return out


class EnglishScoringNormaliser:
    """``text -> normalised text`` for scoring; see the module docstring for what it maps."""

    name = "english"

    def __call__(self, text: str) -> str:
        s = unicodedata.normalize("NFKC", text).lower()
        s = _THOUSANDS_SEP.sub("", s)
        s = _PERCENT.sub(" percent ", s)
        s = _split_punctuation(s)
        return " ".join(spelled_numbers_to_digits(s.split()))
