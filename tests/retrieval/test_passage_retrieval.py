"""Passage reading, BM25/TF-IDF/LM-embedding ranking, the context format, Recall@k."""

import json

import numpy as np
import pytest
from tiny_models import tiny_llm, word_level_tokenizer

from espnet_llm_plugin.retrieval import passage_retrieval as pr

PASSAGES = [
    {"id": "solara", "text": "the solara probe was launched from tanegashima its target is titania"},
    {"id": "zenobia", "text": "the zenobia orbiter was launched from mahia its target is callisto"},
    {"id": "vesper", "text": "the vesperine lander carries a laser altimeter and a dust analyzer"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def passages_file(tmp_path):
    return write_jsonl(tmp_path / "passages.jsonl", PASSAGES)


@pytest.mark.parametrize("scorer", ["bm25", "tfidf"])
def test_word_scorers_rank_the_right_passage_first(passages_file, scorer):
    passages = pr.read_passages(passages_file)
    queries = {
        "u1": "the orbiter reached callisto",  # zenobia
        "u2": "a dust analyzer on the lander",  # vesper
        "u3": "titania seen by the probe",  # solara
    }
    ranked = pr.rank_passages(queries, passages, k=2, scorer=scorer)
    assert [ranked[u][0].id for u in ("u1", "u2", "u3")] == ["zenobia", "vesper", "solara"]
    assert all(len(r) == 2 for r in ranked.values())
    gold = {"u1": {"zenobia"}, "u2": {"solara"}, "u3": {"solara"}}
    recall = pr.recall_at_k(ranked, gold, [1, 2])
    assert recall["recall@1"] == pytest.approx(2 / 3) and recall["num_utterances"] == 3


def test_bm25_prefers_rare_words_and_shorter_passages():
    index = pr.Bm25Index(["cat cat dog", "cat dog dog dog dog dog dog", "bird"])
    s = index.scores("cat")
    assert s[0] > s[1] > 0 and s[2] == 0
    assert np.all(index.scores("unknown words") == 0)


def _bm25_by_formula(texts, query, k1=1.5, b=0.75):
    """Okapi BM25 written out term by term (the definition the sparse index must match)."""
    import math
    from collections import Counter

    tfs = [Counter(pr.words(t)) for t in texts]
    lens = [sum(tf.values()) for tf in tfs]
    avg = sum(lens) / len(lens)
    out = []
    for tf, n_words in zip(tfs, lens):
        score = 0.0
        for w, qtf in Counter(pr.words(query)).items():
            df = sum(w in d for d in tfs)
            if df == 0:
                continue
            idf = math.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
            score += qtf * idf * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * n_words / avg))
        out.append(score)
    return np.array(out)


def _tfidf_by_formula(texts, query):
    """Cosine of (1 + log tf) * (log((1 + N) / (1 + df)) + 1) vectors, dense."""
    import math
    from collections import Counter

    tfs = [Counter(pr.words(t)) for t in texts]
    vocab = sorted({w for tf in tfs for w in tf})
    idf = {w: math.log((1 + len(texts)) / (1 + sum(w in tf for tf in tfs))) + 1 for w in vocab}

    def vec(tf):
        v = np.array([(1 + math.log(tf[w])) * idf[w] if tf.get(w) else 0.0 for w in vocab])
        n = np.linalg.norm(v)
        return v / n if n > 0 else v

    q = vec(Counter(pr.words(query)))
    return np.array([vec(tf) @ q for tf in tfs])


def test_sparse_indexes_match_the_formulas_on_random_text():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)] + ["Élan", "naïve", "x"]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 15)))) for _ in range(60)]
    texts[3] = texts[3].upper() + ", with punctuation!"
    bm25, tfidf = pr.Bm25Index(texts), pr.TfidfIndex(texts)
    for _ in range(10):
        query = " ".join(rng.choice(vocab + ["unseen"], size=int(rng.integers(1, 6))))
        np.testing.assert_allclose(bm25.scores(query), _bm25_by_formula(texts, query), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(tfidf.scores(query), _tfidf_by_formula(texts, query), rtol=1e-10, atol=1e-12)
    assert len(bm25) == len(tfidf) == 60


def test_passages_without_words_are_a_clear_error():
    for index in (pr.Bm25Index, pr.TfidfIndex):
        with pytest.raises(pr.PassageError, match="no passage holds a word"):
            index(["...", "!!"])


def test_lm_embedding_scorer_finds_an_identical_passage(tmp_path):
    words = sorted({w for p in PASSAGES for w in p["text"].split()})
    vocab = ["<pad>", "<unk>", "<s>", "</s>"] + words
    model, tokenizer = tiny_llm(
        vocab,
        special_tokens=dict(eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    model.eval()
    passages = [pr.Passage(p["id"], p["text"]) for p in PASSAGES]
    ranked = pr.rank_passages({"u": PASSAGES[1]["text"]}, passages, 1, "lm_embedding", (model, tokenizer))
    assert ranked["u"][0].id == "zenobia"


def test_dynamic_context_ranks_each_utterances_own_documents(tmp_path):
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"utt_id": "a", "documents": ["red cat on a mat", {"id": "a-dog", "text": "big dog ran home"}]},
            {"utt_id": "b", "documents": ["one small bird"]},
        ],
    )
    per_utt = pr.read_utterance_documents(docs)
    assert [p.id for p in per_utt["a"]] == ["a-0", "a-dog"]
    ranked = pr.rank_passages({"a": "the dog ran", "b": "bird"}, per_utt, k=3)
    assert [p.id for p in ranked["a"]] == ["a-dog", "a-0"] and [p.id for p in ranked["b"]] == ["b-0"]
    with pytest.raises(pr.PassageError, match="unknown utterance 'b'"):
        pr.rank_passages({"a": "dog"}, per_utt, k=1)
    with pytest.raises(pr.PassageError, match="no documents for utterance 'c'"):
        pr.rank_passages({"a": "dog", "b": "x", "c": "y"}, per_utt, k=1)


def test_context_line_round_trips_through_tokens(tmp_path):
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "cat", "dog", "sat"]
    tokenizer = word_level_tokenizer(vocab, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    line = pr.join_passages(["cat  sat\n", "dog"])
    assert line == "cat sat ||| dog"
    assert pr.split_passages(line) == ["cat sat", "dog"]
    assert pr.context_token_ids(line, tokenizer) == [4, 6, 3, 5]
    assert pr.context_token_ids("cat </s> dog", tokenizer) == [4, 5]  # eos inside a passage dropped


def test_bad_inputs_give_clear_errors(tmp_path, passages_file):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(pr.PassageError, match="empty.jsonl: passages file is empty"):
        pr.read_passages(empty)
    with pytest.raises(pr.PassageError, match="not found"):
        pr.read_passages(tmp_path / "missing.jsonl")
    dup = write_jsonl(tmp_path / "dup.jsonl", [PASSAGES[0], PASSAGES[0]])
    with pytest.raises(pr.PassageError, match="dup.jsonl:2: duplicate passage id 'solara'"):
        pr.read_passages(dup)
    sep = write_jsonl(tmp_path / "sep.jsonl", [{"id": "x", "text": "a ||| b"}])
    with pytest.raises(pr.PassageError, match="separator"):
        pr.read_passages(sep)
    noid = write_jsonl(tmp_path / "noid.jsonl", [{"text": "a"}])
    with pytest.raises(pr.PassageError, match="noid.jsonl:1: a passage needs an 'id'"):
        pr.read_passages(noid)
    with pytest.raises(pr.PassageError, match="num_passages must be >= 1"):
        pr.rank_passages({"u": "x"}, pr.read_passages(passages_file), k=0)
    with pytest.raises(pr.PassageError, match="no ranked utterance has a gold"):
        pr.recall_at_k({"u": []}, {"v": {"x"}}, [1])


def test_plain_text_passages_get_line_numbers(tmp_path):
    p = tmp_path / "passages.txt"
    p.write_text("first passage\n\nsecond passage\n")
    assert pr.read_passages(p) == [pr.Passage("1", "first passage"), pr.Passage("3", "second passage")]


@pytest.mark.parametrize("scorer", ["bm25", "tfidf"])
def test_exclude_query_drops_passages_holding_the_reference(passages_file, scorer):
    passages = pr.read_passages(passages_file)
    # The reference is a sentence of the zenobia passage (a training utterance whose own
    # sentence is in the memory); "the orbiter" alone is in no passage as a phrase.
    queries = {"ref": "zenobia orbiter was launched from mahia", "other": "the orbiter reached callisto"}
    plain = pr.rank_passages(queries, passages, k=3, scorer=scorer)
    assert plain["ref"][0].id == "zenobia"
    ranked = pr.rank_passages(queries, passages, k=3, scorer=scorer, exclude_query=True)
    assert ranked["ref"][0].id != "zenobia"
    # pushed last, not dropped: k passages are still returned when the memory is that small
    assert ranked["ref"][-1].id == "zenobia" and len(ranked["ref"]) == 3
    # a query found in no passage verbatim ranks as before
    assert [p.id for p in ranked["other"]] == [p.id for p in plain["other"]]
    # whole words only: "zenobia orb" is not contained in "... zenobia orbiter ..."
    partial = pr.rank_passages({"u": "zenobia orb"}, passages, k=1, scorer=scorer, exclude_query=True)
    assert partial["u"][0].id == "zenobia"


def test_exclude_query_in_dynamic_context_and_empty_query():
    docs = {"u1": [pr.Passage("a", "alpha beta gamma"), pr.Passage("b", "beta delta")]}
    ranked = pr.rank_passages({"u1": "alpha beta"}, docs, k=1, exclude_query=True)
    assert ranked["u1"][0].id == "b"
    # an empty query (a non-speech segment) is contained in everything: exclude nothing
    ranked = pr.rank_passages({"u1": ""}, docs, k=2, exclude_query=True)
    assert [p.id for p in ranked["u1"]] == ["a", "b"]
