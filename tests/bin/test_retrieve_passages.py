"""retrieve_passages CLI: context files for the cross-attention model, Recall@k, bad input."""

import json

import pytest
from tiny_models import word_level_tokenizer

from espnet_llm_plugin.bin.retrieve_passages import main

PASSAGES = [
    {"id": "p1", "text": "the cat sat on the mat"},
    {"id": "p2", "text": "a big dog ran home"},
    {"id": "p3", "text": "one red probe to the moon"},
]


@pytest.fixture
def llm_tokenizer_dir(tmp_path_factory):

    d = tmp_path_factory.mktemp("tok")
    vocab = ["<pad>", "<unk>", "<s>", "</s>"] + sorted({w for p in PASSAGES for w in p["text"].split()})
    word_level_tokenizer(vocab, eos_token="</s>", pad_token="<pad>", unk_token="<unk>").save_pretrained(d)
    (d / "config.json").write_text("{}")  # check_llm_dir wants an HF dir
    return d, vocab


@pytest.fixture
def inputs(tmp_path):
    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES))
    queries = tmp_path / "hyp.txt"
    queries.write_text("u2 the dog ran\nu1 a cat on a mat\nu3 probe moon\n")
    gold = tmp_path / "gold"
    gold.write_text("u1 p1\nu2 p2\nu3 p2\n")  # u3: p3 first, p1 second (tie, stable)
    return passages, queries, gold


def test_domain_mode_writes_context_ids_and_recall(tmp_path, inputs, llm_tokenizer_dir):
    passages, queries, gold = inputs
    tok_dir, vocab = llm_tokenizer_dir
    out = tmp_path / "ctx"
    main(
        [
            "--passages",
            str(passages),
            "--queries",
            str(queries),
            "--num_passages",
            "2",
            "--gold",
            str(gold),
            "--llm_path",
            str(tok_dir),
            "--out_dir",
            str(out),
        ]
    )
    lines = (out / "context").read_text().splitlines()
    assert lines[0] == "u1 the cat sat on the mat ||| a big dog ran home"
    assert [line.split()[0] for line in lines] == ["u1", "u2", "u3"]  # sorted like Kaldi
    assert (out / "passage_ids").read_text().splitlines()[1].split()[:2] == ["u2", "p2"]
    ids = (out / "context_ids").read_text().splitlines()[0].split()
    words = [vocab[int(i)] for i in ids[1:]]
    assert words == "the cat sat on the mat </s> a big dog ran home".split()
    report = json.loads((out / "retrieval.json").read_text())
    assert report["mode"] == "domain" and report["recall@1"] == pytest.approx(2 / 3)
    assert report["recall@2"] == pytest.approx(2 / 3)


def test_exclude_query_keeps_the_reference_sentence_out(tmp_path, inputs):
    passages, _, _ = inputs
    refs = tmp_path / "text"  # a reference ("the dog ran" is not verbatim in p2, "big dog ran" is)
    refs.write_text("u1 big dog ran\nu2 the dog ran\n")
    for flag, first in (("false", ["p2", "p2"]), ("true", ["p1", "p2"])):
        out = tmp_path / f"ctx_{flag}"
        main(
            [
                "--passages",
                str(passages),
                "--queries",
                str(refs),
                "--num_passages",
                "1",
                "--exclude_query",
                flag,
                "--out_dir",
                str(out),
            ]
        )
        assert [line.split()[1] for line in (out / "passage_ids").read_text().splitlines()] == first
        assert json.loads((out / "retrieval.json").read_text())["exclude_query"] is (flag == "true")


def test_dynamic_mode(tmp_path, inputs):
    _, queries, _ = inputs
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"utt_id": u, "documents": ["x y", f"{u} dog ran"]}) + "\n" for u in ("u1", "u2", "u3"))
    )
    out = tmp_path / "ctx"
    main(["--documents", str(docs), "--queries", str(queries), "--num_passages", "1", "--out_dir", str(out)])
    assert (out / "context").read_text().splitlines()[1] == "u2 u2 dog ran"
    assert not (out / "context_ids").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, q: p.write_text(""), "passages file is empty"),
        (lambda p, q: q.write_text("u1 cat\nu1 dog\n"), "duplicate key 'u1'"),
        (None, "--num_passages must be >= 1"),
    ],
)
def test_bad_input_exits_with_a_message_and_writes_nothing(tmp_path, inputs, capsys, change, message):
    passages, queries, _ = inputs
    k = "2"
    if change is None:
        k = "0"
    else:
        change(passages, queries)
    out = tmp_path / "ctx"
    with pytest.raises(SystemExit) as e:
        main(["--passages", str(passages), "--queries", str(queries), "--num_passages", k, "--out_dir", str(out)])
    assert message in str(e.value)
    assert not out.exists()


def test_unknown_utterance_in_documents_is_refused(tmp_path, inputs):
    _, queries, _ = inputs
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"utt_id": u, "documents": ["a"]}) + "\n" for u in ("u1", "u2", "u3", "zz")))
    with pytest.raises(SystemExit) as e:
        main(["--documents", str(docs), "--queries", str(queries), "--out_dir", str(tmp_path / "o")])
    assert "unknown utterance 'zz'" in str(e.value)
