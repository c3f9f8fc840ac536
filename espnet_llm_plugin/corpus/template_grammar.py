"""A tiny template grammar: named rules whose alternatives are strings with ``{slot}``s.

Expanding a rule picks one alternative uniformly at random (list an alternative twice to
weight it) and expands its slots recursively. A slot names another rule or a *binding*, a
value fixed for the whole sentence (e.g. the mission a sentence talks about), so that
several slots of one sentence agree with each other.

After expansion, ``a`` becomes ``an`` before a vowel sound ("an old car").
"""

from __future__ import annotations

import random
import re
from typing import Dict, Iterable, Mapping, Optional, Sequence, Set

_SLOT = re.compile(r"\{([a-z0-9_]+)\}")
_MAX_DEPTH = 30
# Words whose first letter misleads the a/an rule.
_VOWEL_LETTER_CONSONANT_SOUND = {
    "one",
    "once",
    "university",
    "uniform",
    "unit",
    "useful",
    "european",
}
_CONSONANT_LETTER_VOWEL_SOUND = {"hour", "hours", "honest", "honour"}


class GrammarError(ValueError):
    """A rule refers to a slot that is neither a rule nor a binding, or recurses forever."""


class TemplateGrammar:
    """Named rules of template strings; see the module docstring."""

    def __init__(self, name: str, rules: Mapping[str, Sequence[str]], bindings: Iterable[str] = ()):
        """Check that every slot refers to a rule or to one of the ``bindings`` names."""
        self.name = name
        self.rules: Dict[str, tuple] = {k: tuple(v) for k, v in rules.items()}
        self.binding_names = frozenset(bindings)
        for rule, alternatives in self.rules.items():
            if not alternatives:
                raise GrammarError(f"grammar '{name}': rule '{rule}' has no alternatives")
            for alt in alternatives:
                for slot in _SLOT.findall(alt):
                    if slot not in self.rules and slot not in self.binding_names:
                        raise GrammarError(
                            f"grammar '{name}': rule '{rule}' alternative {alt!r} refers to unknown slot '{slot}'"
                        )

    def expand(self, symbol: str, rng: random.Random, bindings: Optional[Mapping[str, str]] = None) -> str:
        """Expand rule ``symbol`` into a sentence (single-spaced, a/an fixed)."""
        if symbol not in self.rules:
            raise GrammarError(f"grammar '{self.name}': no rule named '{symbol}'")
        text = self._expand(symbol, rng, dict(bindings or {}), 0)
        return fix_articles(" ".join(text.split()))

    def _expand(self, symbol: str, rng: random.Random, bindings: Dict[str, str], depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise GrammarError(f"grammar '{self.name}': rule '{symbol}' recurses too deeply")
        if symbol in bindings:
            return bindings[symbol]
        if symbol not in self.rules:
            raise GrammarError(f"grammar '{self.name}': slot '{symbol}' is a binding but no value was given")
        template = rng.choice(self.rules[symbol])
        return _SLOT.sub(lambda m: self._expand(m.group(1), rng, bindings, depth + 1), template)

    def terminal_words(self) -> Set[str]:
        """Every literal word that appears in some rule (bindings excluded)."""
        words: Set[str] = set()
        for alternatives in self.rules.values():
            for alt in alternatives:
                words.update(_SLOT.sub(" ", alt).split())
        if "a" in words:
            words.add("an")
        return words


def fix_articles(sentence: str) -> str:
    """Turn ``a`` into ``an`` before a vowel sound and ``an`` into ``a`` before a consonant."""
    words = sentence.split()
    for i in range(len(words) - 1):
        if words[i] in ("a", "an"):
            words[i] = "an" if _starts_with_vowel_sound(words[i + 1]) else "a"
    return " ".join(words)


def _starts_with_vowel_sound(word: str) -> bool:
    if word in _VOWEL_LETTER_CONSONANT_SOUND:
        return False
    if word in _CONSONANT_LETTER_VOWEL_SOUND:
        return True
    return word[:1] in ("a", "e", "i", "o", "u")
