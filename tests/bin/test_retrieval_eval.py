"""retrieval_eval CLI end to end: contrastive training raises Recall@1 on a tiny synthetic case."""

import json
import random

import pytest
import torch

from espnet_llm_plugin.bin import contrastive_train, retrieval_eval
from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer
from espnet_llm_plugin.mmlm.speech_text_retrieval import MD_HEADER
from espnet_llm_plugin.mmlm.unit_vocab import extend_model_dir

SENTENCES = [
    f"{s} {v}"
    for s in ("anna", "peter", "the cat", "my brother", "they", "the pilot")
    for v in ("reads a book", "walks home", "eats an apple", "sits on the chair")
]


def write_set(d, sentences, seed):
    """Kaldi text + units: one unit per character, repeated 1-2 times, 10% replaced (seeded)."""
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text("".join(f"{d.name}{i:03d} {t}\n" for i, t in enumerate(sentences)))
    lines = []
    for i, t in enumerate(sentences):
        units = []
        for c in t:
            u = ord(c) % 32 if rng.random() > 0.1 else rng.randrange(32)
            units += [u] * rng.choice([1, 2])
        lines.append(f"{d.name}{i:03d} " + " ".join(map(str, units)) + "\n")
    (d / "units").write_text("".join(lines))
    return d / "units", d / "text"


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_contrastive_training_raises_recall(tmp_path):
    tok = train_tokenizer(SENTENCES * 3, vocab_size=300)
    save_pretrained_dir(
        tmp_path / "base",
        build_llama(tok, LmConfig(hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=256)),
        tok,
    )
    extend_model_dir(tmp_path / "base", tmp_path / "ext", 32)
    train_units, train_text = write_set(tmp_path / "train", SENTENCES * 2, 0)
    test_units, test_text = write_set(tmp_path / "test", SENTENCES[::-1], 100)  # new renderings
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n")

    def evaluate(model_dir, name):
        out = tmp_path / f"{name}.json"
        retrieval_eval.main(
            [
                "--model_dir",
                str(model_dir),
                "--units",
                str(test_units),
                "--text",
                str(test_text),
                "--out_json",
                str(out),
                "--results_md",
                str(md),
                "--name",
                name,
                "--num_threads",
                "1",
                "--batch_size",
                "7",
            ]
        )
        return json.loads(out.read_text())

    before = evaluate(tmp_path / "ext", "untrained")
    contrastive_train.main(
        [
            "--llm_dir",
            str(tmp_path / "ext"),
            "--units",
            str(train_units),
            "--text",
            str(train_text),
            "--out_dir",
            str(tmp_path / "con"),
            "--max_steps",
            "60",
            "--batch_size",
            "16",
            "--lr",
            "3e-3",
            "--lora_r",
            "8",
            "--num_threads",
            "1",
            "--seed",
            "0",
        ]
    )
    after = evaluate(tmp_path / "con", "contrastive")
    assert after["utterances"] == after["texts"] == len(SENTENCES)
    for side in ("speech_to_text", "text_to_speech"):
        assert after[side]["R@1"] > before[side]["R@1"] + 0.3
        assert after[side]["R@1"] <= after[side]["R@5"] <= after[side]["R@10"]
    assert after["pooling"] == "mean" and after["layer"] == -1  # from contrastive.json
    lines = md.read_text().splitlines()
    assert lines[0] == "# RESULTS" and lines.count(MD_HEADER) == 1
    assert [line.split("|")[1].strip() for line in lines[lines.index(MD_HEADER) + 2 :]] == ["untrained", "contrastive"]


def test_errors(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SystemExit, match="retrieval_eval: error"):
        retrieval_eval.main(
            ["--model_dir", str(tmp_path / "m"), "--units", "u", "--text", "t", "--out_json", str(tmp_path / "r.json")]
        )
    assert not (tmp_path / "r.json").exists()
