"""Sentences and passages of the synthetic demo corpus, deterministic by seed.

Two domains (see :mod:`general_domain` and :mod:`target_domain`):

* ``general``: everyday sentences over a closed vocabulary of a few hundred words;
* ``target``: sentences about invented space missions, rich in names and rare words.

Passages (3-6 sentences about one mission, scientist or moon) form the retrieval memory
of the target domain. Every output is normalised with :func:`normalize_text`, and every
random choice comes from ``random.Random`` seeded from the arguments, never from global
state, so the same call always returns the same list.
"""

from __future__ import annotations

import functools
import random
from typing import Callable, Collection, Dict, List, Set

from espnet_llm_plugin.corpus import general_domain, target_domain
from espnet_llm_plugin.corpus.target_domain import World, build_world
from espnet_llm_plugin.corpus.template_grammar import TemplateGrammar
from espnet_llm_plugin.corpus.text_normalization import normalize_text

__all__ = [
    "DOMAINS",
    "generate_sentences",
    "generate_target_corpus",
    "generate_passages",
    "general_vocabulary",
    "build_world",
    "normalize_text",
    "World",
]

DOMAINS = ("general", "target")
# Draws allowed per requested sentence before giving up on finding new unique ones.
_MAX_DRAWS_PER_SENTENCE = 50


@functools.lru_cache(maxsize=None)
def _general_grammar() -> TemplateGrammar:
    return general_domain.build_general_grammar()


@functools.lru_cache(maxsize=None)
def _target_grammar() -> TemplateGrammar:
    return target_domain.build_target_grammar()


@functools.lru_cache(maxsize=8)
def _world(seed: int) -> World:
    return build_world(seed)


def general_vocabulary() -> Set[str]:
    """Every word a general-domain sentence can contain."""
    return set(_general_grammar().terminal_words())


def _sentence_source(domain: str, seed: int, stream: str) -> Callable[[], str]:
    """A function drawing one normalised sentence of ``domain`` (length limits applied
    by the caller) from a random stream named by ``stream`` and ``seed``."""
    rng = random.Random(f"{domain}:{stream}:{seed}")
    if domain == "general":
        grammar = _general_grammar()
        return lambda: normalize_text(grammar.expand("sentence", rng))
    if domain == "target":
        grammar, world = _target_grammar(), _world(seed)

        def draw() -> str:
            mission = rng.choice(world.missions)
            bindings = target_domain.sentence_bindings(world, mission, rng)
            return normalize_text(grammar.expand("sentence", rng, bindings))

        return draw
    raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")


def _length_limits(domain: str) -> tuple:
    if domain == "general":
        return general_domain.MIN_WORDS, general_domain.MAX_WORDS
    return target_domain.MIN_WORDS, target_domain.MAX_WORDS


def _unique_sentences(domain: str, n: int, seed: int, stream: str, exclude: Collection[str]) -> List[str]:
    if n < 0:
        raise ValueError(f"cannot generate {n} sentences")
    draw = _sentence_source(domain, seed, stream)
    lo, hi = _length_limits(domain)
    excluded = set(exclude)
    seen: Set[str] = set()
    out: List[str] = []
    for _ in range(_MAX_DRAWS_PER_SENTENCE * n + 100):
        if len(out) == n:
            return out
        sentence = draw()
        if sentence in seen or sentence in excluded or not lo <= len(sentence.split()) <= hi:
            continue
        seen.add(sentence)
        out.append(sentence)
    if len(out) == n:
        return out
    raise ValueError(
        f"the {domain} grammar produced only {len(out)} unique sentences of the {n} requested "
        f"(seed {seed}); ask for fewer"
    )


def generate_sentences(domain: str, n: int, seed: int, exclude: Collection[str] = ()) -> List[str]:
    """``n`` distinct normalised sentences of ``domain`` ("general" or "target").

    Args:
        domain: "general" or "target".
        n: how many.
        seed: the same seed gives the same list; for "target" it also picks the world.
        exclude: sentences never to return (e.g. passage sentences, other splits).

    Raises:
        ValueError: unknown domain, or the grammar cannot make ``n`` unique sentences.
    """
    return _unique_sentences(domain, n, seed, "sentences", exclude)


def generate_target_corpus(n: int, seed: int, exclude: Collection[str] = ()) -> List[str]:
    """``n`` distinct target-domain sentences for LM training, about the same world as
    ``generate_sentences("target", ..., seed)`` but from another random stream; pass the
    test sentences as ``exclude`` to keep them out."""
    return _unique_sentences("target", n, seed, "corpus", exclude)


def generate_passages(n: int, seed: int) -> List[Dict]:
    """``n`` distinct passages: dicts with ``id``, ``title``, ``text`` (normalised, the
    sentences joined by spaces), ``sentences`` and ``entities`` (rare names mentioned).

    The first passages describe every mission completely (its target, lead scientist,
    launch site, instruments and discovery), so with ``n`` at least the number of missions
    every rare entity of the world appears in some passage. Later passages describe
    scientists and moons, then repeat topics with other selections of facts.
    """
    if n < 0:
        raise ValueError(f"cannot generate {n} passages")
    world = _world(seed)
    rng = random.Random(f"passages:{seed}")
    topics: List[object] = rng.sample(list(world.missions), len(world.missions))
    topics += rng.sample(list(world.scientists) + list(world.bodies), len(world.scientists) + len(world.bodies))
    passages: List[Dict] = []
    texts: Set[str] = set()
    first_round = True
    while len(passages) < n:
        added = 0
        for topic in topics:
            if len(passages) == n:
                break
            for _ in range(20):
                passage = target_domain.make_passage(world, topic, rng, complete=first_round)
                if passage["text"] not in texts:
                    break
            else:
                continue  # this topic has no new selection of facts left
            texts.add(passage["text"])
            passages.append({"id": f"passage{len(passages):05d}", **passage})
            added += 1
        if added == 0:
            raise ValueError(f"only {len(passages)} distinct passages can be made; asked for {n}")
        first_round = False
    return passages
