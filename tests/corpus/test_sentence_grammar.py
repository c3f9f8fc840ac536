"""Sentence grammar of the synthetic corpus: normalisation, determinism, domains, passages."""

import random
import re

import pytest

from espnet_llm_plugin.corpus.sentence_grammar import (
    build_world,
    general_vocabulary,
    generate_passages,
    generate_sentences,
    generate_target_corpus,
)
from espnet_llm_plugin.corpus.template_grammar import GrammarError, TemplateGrammar, fix_articles
from espnet_llm_plugin.corpus.text_normalization import (
    normalize_text,
    number_to_words,
    ordinal_words,
    year_to_words,
)

NORMALIZED = re.compile(r"^[a-z']+( [a-z']+)*$")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("  It's   7 o'clock.  ", "it's seven o'clock"),
        (
            "Dr. O'Neil paid $2.50 for 21 eggs",
            "dr o'neil paid two point five zero for twenty one eggs",
        ),
        ("the 3rd and 21st; 100%", "the third and twenty first one hundred percent"),
        ("Café 'quoted' words — and-dashes", "cafe quoted words and dashes"),
        ("Don\u2019t STOP", "don't stop"),
        ("1999 & 4021", "one thousand nine hundred ninety nine and four thousand twenty one"),
        ("", ""),
        ("?!.", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(15) == "fifteen"
    assert number_to_words(40) == "forty"
    assert number_to_words(99) == "ninety nine"
    assert number_to_words(305) == "three hundred five"
    assert number_to_words(1_000_001) == "one million one"
    assert year_to_words(2031) == "twenty thirty one"
    assert year_to_words(2005) == "two thousand five"
    assert year_to_words(1990) == "nineteen ninety"
    assert year_to_words(1906) == "nineteen oh six"
    assert year_to_words(1900) == "nineteen hundred"
    assert ordinal_words(12) == "twelfth"
    assert ordinal_words(40) == "fortieth"
    assert ordinal_words(23) == "twenty third"
    with pytest.raises(ValueError):
        number_to_words(-1)
    with pytest.raises(ValueError):
        year_to_words(99)


def test_template_grammar_articles_and_errors():
    assert fix_articles("a old car and a hour and a one way ticket and an book") == (
        "an old car and an hour and a one way ticket and a book"
    )
    g = TemplateGrammar("t", {"s": ["a {adj} {noun}"], "adj": ["old"], "noun": ["map"]})
    assert g.expand("s", random.Random(0)) == "an old map"
    assert g.terminal_words() == {"a", "an", "old", "map"}
    with pytest.raises(GrammarError, match="rule 's'.*unknown slot 'missing'"):
        TemplateGrammar("t", {"s": ["{missing} word"]})
    with pytest.raises(GrammarError, match="recurses"):
        TemplateGrammar("t", {"s": ["x {s}"]}).expand("s", random.Random(0))


@pytest.mark.parametrize("domain", ["general", "target"])
def test_sentences_deterministic_by_seed(domain):
    a = generate_sentences(domain, 200, seed=3)
    assert a == generate_sentences(domain, 200, seed=3)
    b = generate_sentences(domain, 200, seed=4)
    assert a != b
    assert len(set(a) & set(b)) < 100


@pytest.mark.parametrize("domain, lo, hi", [("general", 4, 10), ("target", 4, 14)])
def test_sentences_normalized_unique_bounded(domain, lo, hi):
    sentences = generate_sentences(domain, 1000, seed=0)
    assert len(sentences) == len(set(sentences)) == 1000
    for s in sentences:
        assert NORMALIZED.match(s), s
        assert normalize_text(s) == s
        assert lo <= len(s.split()) <= hi, s


def test_general_vocabulary_is_small_and_closed():
    vocab = general_vocabulary()
    assert 300 <= len(vocab) <= 400
    used = {w for s in generate_sentences("general", 5000, seed=1) for w in s.split()}
    assert used <= vocab
    assert len(used) > 0.9 * len(vocab)  # the sentences do use (almost) all of it
    assert {"seventy", "o'clock", "yesterday", "where", "tomorrow"} <= used


def test_sentence_patterns_vary():
    sentences = generate_sentences("general", 2000, seed=0)
    first_words = {s.split()[0] for s in sentences}
    assert {"where", "did", "please", "there", "it", "i", "we"} <= first_words
    assert sum(s.startswith(("what", "where", "how", "did", "will", "can", "why", "is", "do")) for s in sentences) > 300


def test_exclude_and_unknown_domain():
    first = generate_sentences("general", 50, seed=0)
    again = generate_sentences("general", 50, seed=0, exclude=first[:10])
    assert not set(again) & set(first[:10])
    with pytest.raises(ValueError, match="unknown domain 'medical'"):
        generate_sentences("medical", 5, seed=0)


def test_target_sentences_agree_with_world():
    world = build_world(0)
    by_name = {m.name: m for m in world.missions}
    bodies = {b.name for b in world.bodies}
    checked = 0
    for s in generate_sentences("target", 500, seed=0):
        words = s.split()
        missions = [w for w in words if w in by_name]
        named_bodies = [w for w in words if w in bodies]
        assert len(missions) <= 1, s
        if missions and named_bodies:
            assert named_bodies == [by_name[missions[0]].target.name], s
            checked += 1
    assert checked > 100


def test_target_domain_is_rare_for_general():
    vocab = general_vocabulary()
    words = [w for s in generate_sentences("target", 300, seed=0) for w in s.split()]
    oov = sum(w not in vocab for w in words) / len(words)
    assert 0.3 < oov < 0.9
    assert {"the", "of", "to", "yesterday"} <= set(words)  # shares function words


def test_passages_cover_test_entities():
    world = build_world(0)
    passages = generate_passages(len(world.missions), seed=0)
    covered = {e for p in passages for e in p["entities"]}
    assert covered == set(world.rare_entities())
    text = " ".join(" " + p["text"] + " " for p in passages)
    for s in generate_sentences("target", 300, seed=0):
        for word in s.split():
            if word in world.rare_entities():
                assert f" {word} " in text, (word, s)


def test_passages_shape_and_determinism():
    passages = generate_passages(150, seed=0)
    assert passages == generate_passages(150, seed=0)
    assert passages != generate_passages(150, seed=1)
    assert len({p["id"] for p in passages}) == len({p["text"] for p in passages}) == 150
    for p in passages:
        assert set(p) == {"id", "title", "text", "sentences", "entities"}
        assert 3 <= len(p["sentences"]) <= 6, p
        assert p["text"] == " ".join(p["sentences"])
        assert all(NORMALIZED.match(s) for s in p["sentences"])
        assert p["entities"], p


def test_target_corpus_excludes_and_differs_from_test():
    test = generate_sentences("target", 100, seed=0)
    corpus = generate_target_corpus(2000, seed=0, exclude=test)
    assert len(set(corpus)) == 2000
    assert not set(corpus) & set(test)
    # The corpus talks about the same entities as the test sentences.
    world = build_world(0)
    test_entities = {w for s in test for w in s.split()} & set(world.rare_entities())
    corpus_words = {w for s in corpus for w in s.split()}
    assert len(test_entities - corpus_words) <= 2
