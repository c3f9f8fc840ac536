"""mmlm_train CLI: mixed-sequence training of a unit-extended LM, and --eval_only perplexity."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from espnet_llm_plugin.bin.mmlm_train import main
from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer
from espnet_llm_plugin.mmlm.unit_vocab import extend_model_dir

SENTENCES = [
    f"{s} {v}" for s in ("anna", "peter", "the cat", "they") for v in ("reads a book", "walks home", "eats an apple")
]


def write_set(d, sentences, seed):
    """Kaldi text + units (one unit per character, seeded noise)."""
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text("".join(f"u{i:03d} {t}\n" for i, t in enumerate(sentences)))
    (d / "units").write_text(
        "".join(
            f"u{i:03d} " + " ".join(str(ord(c) % 16 if rng.random() > 0.1 else rng.randrange(16)) for c in t) + "\n"
            for i, t in enumerate(sentences)
        )
    )
    return d / "units", d / "text"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmlm_train")
    tok = train_tokenizer(SENTENCES * 3, vocab_size=280)
    save_pretrained_dir(
        root / "base",
        build_llama(tok, LmConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=256)),
        tok,
    )
    extend_model_dir(root / "base", root / "ext", 16)
    return root, write_set(root / "train", SENTENCES, 0), write_set(root / "dev", SENTENCES[:4], 1)


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_train_then_eval_only(setup):
    root, (units, text), (dev_units, dev_text) = setup
    out = root / "mm"
    main(
        [
            "--llm_dir",
            str(root / "ext"),
            "--units",
            str(units),
            "--text",
            str(text),
            "--dev_units",
            str(dev_units),
            "--dev_text",
            str(dev_text),
            "--out_dir",
            str(out),
            "--extra_text",
            str(root / "train" / "text"),
            "--mix",
            "text=1,unit_to_text=2",
            "--max_steps",
            "12",
            "--batch_size",
            "4",
            "--seq_len",
            "64",
            "--warmup_steps",
            "2",
            "--lr",
            "1e-2",
            "--eval_every",
            "6",
            "--lora_r",
            "4",
            "--num_threads",
            "1",
            "--eval_text",
            str(dev_text),
            "--eval_has_ids",
            "true",
            "--eval_json",
            str(root / "ppl_mm.json"),
            "--device",
            "cpu",
        ]
    )
    log = json.loads((out / "train_log.json").read_text())
    assert log["final_dev_ppl"] < log["initial_dev_ppl"]
    assert log["sequences"]["text_to_unit"] == 0 and log["sequences"]["text"] >= len(SENTENCES)
    assert (out / "unit_vocab.json").is_file() and not (root / "mm.ckpt").exists()
    AutoModelForCausalLM.from_pretrained(out)  # a plain HF dir (LoRA merged)
    assert json.loads((root / "ppl_mm.json").read_text())["ppl"] == log["eval_text"]["ppl"]

    # text perplexity of the base (text-only) LM on the same transcripts
    main(
        [
            "--llm_dir",
            str(root / "base"),
            "--eval_only",
            "true",
            "--eval_text",
            str(dev_text),
            "--eval_has_ids",
            "true",
            "--eval_json",
            str(root / "ppl_base.json"),
            "--num_threads",
            "1",
        ]
    )
    base = json.loads((root / "ppl_base.json").read_text())
    assert base["sentences"] == 4 and base["ppl"] > 1


def test_errors(setup, tmp_path):
    root, (units, text), _ = setup
    bad_text = tmp_path / "text"
    bad_text.write_text("u000 anna reads a book\nzzz extra line\n")
    with pytest.raises(SystemExit, match=r"zzz"):
        main(
            [
                "--llm_dir",
                str(root / "ext"),
                "--units",
                str(units),
                "--text",
                str(bad_text),
                "--out_dir",
                str(tmp_path / "o"),
                "--max_steps",
                "1",
            ]
        )
    with pytest.raises(SystemExit, match="unit_vocab.json"):
        main(
            [
                "--llm_dir",
                str(root / "base"),
                "--units",
                str(units),
                "--text",
                str(text),
                "--out_dir",
                str(tmp_path / "o"),
                "--max_steps",
                "1",
            ]
        )
    with pytest.raises(SystemExit, match="--eval_text"):
        main(["--llm_dir", str(root / "base"), "--eval_only", "true"])
    with pytest.raises(SystemExit, match="--out_dir is required"):
        main(["--llm_dir", str(root / "ext")])
    with pytest.raises(SystemExit, match="--units and --text, or --extra_units"):
        main(["--llm_dir", str(root / "ext"), "--out_dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="both --units and --text"):
        main(["--llm_dir", str(root / "ext"), "--units", str(units), "--out_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_speech_only_adaptation(setup):
    """--extra_units alone: units without transcripts adapt the LM (its unit rows move)."""
    root, (units, _), _ = setup
    out = root / "speech_only"
    main(
        [
            "--llm_dir",
            str(root / "ext"),
            "--extra_units",
            str(units),
            "--out_dir",
            str(out),
            "--finetune",
            "full",
            "--max_steps",
            "4",
            "--batch_size",
            "4",
            "--seq_len",
            "64",
            "--warmup_steps",
            "1",
            "--lr",
            "1e-2",
            "--eval_every",
            "4",
            "--num_threads",
            "1",
            "--device",
            "cpu",
        ]
    )
    log = json.loads((out / "train_log.json").read_text())
    assert log["sequences"]["units"] == len(SENTENCES) and log["sequences"]["text"] == 0
    info = json.loads((root / "ext" / "unit_vocab.json").read_text())
    first_unit = info["first_unit_id"]
    before = AutoModelForCausalLM.from_pretrained(root / "ext").get_input_embeddings().weight
    after = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight
    assert before.shape == after.shape and not torch.equal(before, after)
    assert not torch.equal(before[first_unit:], after[first_unit:])
