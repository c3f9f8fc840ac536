"""Tiny data for the speech+text LM tests: sentences and synthetic unit sequences derived from
characters (with noise), as a Kaldi text + units file pair."""

import random

SUBJECTS = ["anna", "peter", "the cat", "my brother", "they", "the pilot"]
VERBS = ["reads a book", "walks home", "eats an apple", "sits on the chair", "sings loudly"]
SENTENCES = [f"{s} {v}" for s in SUBJECTS for v in VERBS]
NUM_UNITS = 32


def synthetic_units(text, seed, num_units=NUM_UNITS, noise=0.1):
    """Units of a 'speech' rendering of ``text``: one unit per character, repeated 1-2 times,
    ``noise`` of them replaced at random (seeded)."""
    rng = random.Random(seed)
    units = []
    for c in text:
        u = ord(c) % num_units
        if rng.random() < noise:
            u = rng.randrange(num_units)
        units += [u] * rng.choice([1, 2])
    return units


def write_set(directory, prefix, sentences, seed):
    """Kaldi ``text`` + ``units`` files for ``sentences``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}{i:03d}" for i in range(len(sentences))]
    (directory / "text").write_text("".join(f"{u} {t}\n" for u, t in zip(ids, sentences)))
    (directory / "units").write_text(
        "".join(
            f"{u} {' '.join(map(str, synthetic_units(t, seed + i)))}\n" for i, (u, t) in enumerate(zip(ids, sentences))
        )
    )
    return directory / "units", directory / "text"
