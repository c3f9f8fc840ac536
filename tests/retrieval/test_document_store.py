"""Memory corpus -> documents -> sliding windows."""

import json

import pytest

from espnet_llm_plugin.retrieval.document_store import (
    Document,
    MemoryCorpusError,
    iter_windows,
    multimodal_documents,
    read_memory_texts,
    sliding_windows,
    text_documents,
)


def covered_targets(doc, window, stride):
    """Every (text position -> next token) pair the windows emit, in order."""
    out = []
    for w in sliding_windows(doc, window, stride):
        for p, v in zip(w.key_positions(), w.values()):
            out.append(v)
            assert len(w.input_ids) - w.n_prefix <= window
    return out


@pytest.mark.parametrize("n,window,stride", [(1, 4, 4), (2, 4, 4), (10, 4, 4), (10, 4, 1), (23, 5, 3), (7, 20, 10)])
def test_each_next_token_once(n, window, stride):
    doc = Document("d", tuple(range(100, 100 + n)), prefix=(7, 8))
    assert covered_targets(doc, window, stride) == list(range(101, 100 + n))
    for w in sliding_windows(doc, window, stride):
        assert w.input_ids[:2] == (7, 8)


def test_overlapping_windows_give_more_context():
    doc = Document("d", tuple(range(10)))
    ws = sliding_windows(doc, window=4, stride=2)
    # second window starts at 2 and emits keys only for positions not covered before
    assert ws[1].input_ids == (2, 3, 4, 5) and ws[1].first_key == 1 and ws[1].values() == [4, 5]


def test_bad_window_args():
    doc = Document("d", (1, 2, 3))
    with pytest.raises(ValueError, match="window"):
        sliding_windows(doc, window=1)
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(doc, window=4, stride=5)


def test_text_and_jsonl_memory(tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    txt = tmp_path / "m.txt"
    txt.write_text("the cat sat\n\n the dog \n")
    docs = text_documents(tok, txt)
    assert [d.doc_id for d in docs] == ["1", "3"]
    assert docs[0].ids == (tok.bos_token_id, *tok("the cat sat", add_special_tokens=False).input_ids, tok.eos_token_id)
    jl = tmp_path / "passages.jsonl"
    jl.write_text(json.dumps({"id": "p0", "text": "the moon"}) + "\n")
    assert read_memory_texts(jl) == [("p0", "the moon")]
    assert len(list(iter_windows(docs, 20))) == 2


def test_empty_or_bad_memory_errors(tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(MemoryCorpusError, match="empty"):
        text_documents(tok, empty)
    with pytest.raises(MemoryCorpusError, match="not found"):
        text_documents(tok, tmp_path / "missing.txt")
    bad = tmp_path / "p.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(MemoryCorpusError, match="p.jsonl:1"):
        read_memory_texts(bad)


def test_multimodal_memory(tmp_path, make_lm):
    from transformers import AutoTokenizer

    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    d = make_lm(tmp_path / "mm", extra_tokens=unit_token_list(5))
    tok = AutoTokenizer.from_pretrained(d)
    (tmp_path / "units").write_text("u1 0 3 3 4\nu2 1\nu3 2\n")
    (tmp_path / "text").write_text("u1 the cat\nu2 the dog\nu4 the moon\n")
    docs = multimodal_documents(tok, tmp_path / "units", tmp_path / "text", num_units=5)
    assert [d.doc_id for d in docs] == ["u1", "u2"]
    assert tok.convert_ids_to_tokens(list(docs[0].prefix)) == [
        "<speech>",
        "<unit_0>",
        "<unit_3>",
        "<unit_3>",
        "<unit_4>",
        "</speech>",
    ]
    w = sliding_windows(docs[0], 20)[0]
    assert w.n_prefix == 6 and w.values() == list(docs[0].ids[1:])
    # a text-only tokenizer cannot encode units
    plain = make_lm(tmp_path / "plain")
    with pytest.raises(MemoryCorpusError, match="speech"):
        multimodal_documents(AutoTokenizer.from_pretrained(plain), tmp_path / "units", tmp_path / "text")
    (tmp_path / "text2").write_text("zz the cat\n")
    with pytest.raises(MemoryCorpusError, match="empty"):
        multimodal_documents(tok, tmp_path / "units", tmp_path / "text2")


def test_framing_and_text_form_of_memory_texts(tiny_lm, tmp_path):
    """Recipe-form text is mapped to the LM's form and framed ``start text end[0]``; without
    them the legacy ``[bos] text [eos]``."""
    from transformers import AutoTokenizer

    from espnet_llm_plugin.core.framing import LmFraming
    from espnet_llm_plugin.core.text_form import TextForm
    from espnet_llm_plugin.retrieval.document_store import memory_documents, text_ids

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    words = tok("the cat sat", add_special_tokens=False).input_ids
    assert text_ids(tok, "the cat sat") == (tok.bos_token_id, *words, tok.eos_token_id)
    framing = LmFraming(start=("</s>", "the"), end=("<pad>", "</s>"))
    got = text_ids(tok, "THE CAT SAT", framing, TextForm(case="lower"))
    # only the first end token: the "text ends" event; a second one is no event of the text
    assert got == (tok.eos_token_id, tok.convert_tokens_to_ids("the"), *words, tok.pad_token_id)
    assert text_ids(tok, "THE CAT SAT")[1] == tok.unk_token_id  # upper case is unknown to this vocabulary
    (tmp_path / "text").write_text("u1 THE CAT SAT\n")
    docs = memory_documents(tok, memory_text_file=tmp_path / "text", framing=framing, text_form=TextForm(case="lower"))
    assert docs[0].ids == got and docs[0].doc_id == "u1"
    with pytest.raises(MemoryCorpusError, match="either --memory_text"):
        memory_documents(tok)
    with pytest.raises(MemoryCorpusError, match="needs --memory_text_file"):
        memory_documents(tok, memory_units=tmp_path / "units")


def test_scaled_windows_one_key_per_event_and_scale():
    """Two scales: every next-token event once per scale, with that scale's context; keys both
    scales share (same window start and position) only once."""
    from espnet_llm_plugin.retrieval.document_store import iter_scaled_windows, scaled_windows

    doc = Document("d", tuple(range(100, 140)), prefix=(7,))
    single = scaled_windows(doc, [8], [4])
    assert [(w.input_ids, w.first_key, w.n_keys) for w in single] == [
        (w.input_ids, w.first_key, w.n_keys) for w in sliding_windows(doc, 8, 4)
    ]
    both = scaled_windows(doc, [8, 32], [4, 16])
    keys = [(w.start, w.start + w.first_key + j) for w in both for j in range(w.n_keys)]
    assert len(keys) == len(set(keys))  # no key twice
    events = sorted(p for _, p in keys)

    def positions(w):  # absolute key positions of a window
        return range(w.start + w.first_key, w.start + w.first_key + w.n_keys)

    short = [p for w in sliding_windows(doc, 8, 4) for p in positions(w)]
    long_ = [p for w in sliding_windows(doc, 32, 16) for p in positions(w)]
    # the first long window starts where the first short one does: their shared keys come once
    shared = {p for p in short if p < 7}
    assert events == sorted(short + [p for p in long_ if p not in shared])
    for w in both:
        assert w.input_ids[0] == 7 and w.values() == [100 + p + 1 for p in positions(w)]
        assert len(w.input_ids) - 1 <= 32
    # a position's short-scale key has at most 7 tokens of context, its long-scale key more
    ctx = {}
    for w in both:
        for p in positions(w):
            ctx.setdefault(p, []).append(p - w.start)
    assert sorted(ctx[30]) == [6, 30]  # short window from 24, long one from 0
    assert all(min(c) <= 7 for c in ctx.values())
    assert all(max(c) >= 15 for p, c in ctx.items() if p >= 31)  # overlapping long windows
    assert len(list(iter_scaled_windows([doc, doc], [8, 32], [4, 16]))) == 2 * len(both)
    with pytest.raises(ValueError, match="one stride per window"):
        scaled_windows(doc, [8, 32], [4])
