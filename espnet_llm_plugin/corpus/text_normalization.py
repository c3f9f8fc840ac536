"""Transcript normalisation shared by every part of the demo corpus.

A normalised transcript is lower case, made of words of letters ``a-z`` and apostrophes
only, separated by single spaces, with no punctuation and numbers spelled out
("It's 7.5 km, Dr. O'Neil!" -> "it's seven point five km dr o'neil").
"""

from __future__ import annotations

import re
import unicodedata

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_SYMBOL_WORDS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}

_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_INTEGER = re.compile(r"\d+")
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
# An apostrophe counts only inside a word ("it's", "o'clock"), not as a quote mark.
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r" +")


def number_to_words(n: int) -> str:
    """Spell out a cardinal number, 0 <= n < 10**12 ("4021" -> "four thousand twenty one")."""
    if n < 0:
        raise ValueError(f"number_to_words: negative number {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for size, name in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if n >= size:
            if n >= 1000 * size and size == 10**9:
                raise ValueError(f"number_to_words: {n} is too large")
            high, rest = divmod(n, size)
            return number_to_words(high) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def year_to_words(year: int) -> str:
    """Spell a year the way it is spoken ("2031" -> "twenty thirty one", "2005" ->
    "two thousand five", "1990" -> "nineteen ninety", "1906" -> "nineteen oh six")."""
    if not 1000 <= year <= 9999:
        raise ValueError(f"year_to_words: expected a four digit year, got {year}")
    high, low = divmod(year, 100)
    if low == 0:
        return number_to_words(year) if high % 10 == 0 else f"{number_to_words(high)} hundred"
    if 2000 <= year < 2010:
        return number_to_words(year)
    if low < 10:
        return f"{number_to_words(high)} oh {number_to_words(low)}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def ordinal_words(n: int) -> str:
    """Spell an ordinal number ("21" -> "twenty first")."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def normalize_text(text: str) -> str:
    """Normalise a transcript: lower case, ``[a-z']`` words, single spaces, numbers spelled.

    Idempotent: ``normalize_text(normalize_text(s)) == normalize_text(s)``.
    """
    # Accented letters lose their accents; typographic apostrophes become plain ones.
    s = unicodedata.normalize("NFKD", text)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for symbol, word in _SYMBOL_WORDS.items():
        s = s.replace(symbol, word)
    s = _ORDINAL.sub(lambda m: f" {ordinal_words(int(m.group(1)))} ", s)
    s = _DECIMAL.sub(
        lambda m: f" {number_to_words(int(m.group(1)))} point " + " ".join(_ONES[int(d)] for d in m.group(2)) + " ",
        s,
    )
    s = _INTEGER.sub(lambda m: f" {number_to_words(int(m.group(0)))} ", s)
    s = s.lower()
    s = _NOT_ALLOWED.sub(" ", s)
    s = _STRAY_APOSTROPHE.sub(" ", s)
    return _SPACES.sub(" ", s).strip()


def is_normalized(text: str) -> bool:
    """True when ``text`` is already in normalised form."""
    return normalize_text(text) == text
