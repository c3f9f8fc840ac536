"""contrastive_train CLI: a plain HF dir + contrastive.json out, clear errors."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from espnet_llm_plugin.bin.contrastive_train import main
from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer
from espnet_llm_plugin.mmlm.unit_vocab import extend_model_dir

SENTENCES = [
    f"{s} {v}" for s in ("anna", "peter", "the cat", "they") for v in ("reads a book", "walks home", "eats an apple")
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("contrastive")
    tok = train_tokenizer(SENTENCES * 3, vocab_size=280)
    save_pretrained_dir(
        root / "base",
        build_llama(tok, LmConfig(hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=256)),
        tok,
    )
    extend_model_dir(root / "base", root / "ext", 16)
    rng = random.Random(0)
    (root / "text").write_text("".join(f"u{i:02d} {t}\n" for i, t in enumerate(SENTENCES)))
    (root / "units").write_text(
        "".join(
            f"u{i:02d} " + " ".join(str(ord(c) % 16 if rng.random() > 0.1 else rng.randrange(16)) for c in t) + "\n"
            for i, t in enumerate(SENTENCES)
        )
    )
    (root / "pairs.tsv").write_text("anna reads a book\tanna lit un livre\nthe cat walks home\tle chat rentre\n")
    return root


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_train(setup, tmp_path, finetune):
    out = tmp_path / "con"
    main(
        [
            "--llm_dir",
            str(setup / "ext"),
            "--units",
            str(setup / "units"),
            "--text",
            str(setup / "text"),
            "--translation_pairs",
            str(setup / "pairs.tsv"),
            "--out_dir",
            str(out),
            "--finetune",
            finetune,
            "--lora_r",
            "4",
            "--max_steps",
            "10",
            "--batch_size",
            "6",
            "--lr",
            "3e-3",
            "--layer",
            "1",
            "--pooling",
            "last",
            "--log_every",
            "5",
            "--num_threads",
            "1",
            "--device",
            "cpu",
        ]
    )
    settings = json.loads((out / "contrastive.json").read_text())
    assert settings["layer"] == 1 and settings["pooling"] == "last"
    assert 0.01 <= settings["temperature"] <= 1.0 and settings["num_units"] == 16
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log["train"]] == [5, 10] and log["translation_pairs"] == 2
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in k for k in model.state_dict())
    assert (out / "unit_vocab.json").is_file()


def test_errors(setup, tmp_path):
    common = [
        "--units",
        str(setup / "units"),
        "--text",
        str(setup / "text"),
        "--out_dir",
        str(tmp_path / "o"),
        "--max_steps",
        "1",
    ]
    with pytest.raises(SystemExit, match="layer 7 out of range"):
        main(["--llm_dir", str(setup / "ext"), "--layer", "7", *common])
    with pytest.raises(SystemExit, match="batch_size"):
        main(["--llm_dir", str(setup / "ext"), "--batch_size", "1", *common])
    with pytest.raises(SystemExit, match="unit_vocab.json"):
        main(["--llm_dir", str(setup / "base"), *common])
    assert not (tmp_path / "o").exists()
