"""extend_vocab CLI: a tiny HF LM dir in, an extended from_pretrained-loadable dir out."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from espnet_llm_plugin.bin.extend_vocab import main
from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer

SENTENCES = ["anna reads a book", "peter walks home", "the cat sits on the chair"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    tok = train_tokenizer(SENTENCES * 3, vocab_size=280)
    model = build_llama(tok, LmConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=128))
    d = tmp_path_factory.mktemp("extend") / "base"
    save_pretrained_dir(d, model, tok)
    return d


def test_extend_and_load(base_dir, tmp_path):
    out = tmp_path / "ext"
    main(["--base_dir", str(base_dir), "--out_dir", str(out), "--num_units", "10", "--seed", "2"])
    note = json.loads((out / "unit_vocab.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    assert note["num_units"] == 10 and note["base_vocab_size"] == len(base_tok)
    assert len(tok) == len(base_tok) + 12
    assert tok.convert_tokens_to_ids("<unit_9>") == note["first_unit_id"] + 9
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.tensor([base_tok(SENTENCES[1])["input_ids"]])
    assert ids.tolist() == [tok(SENTENCES[1])["input_ids"]]
    with torch.no_grad():
        assert torch.equal(model(ids).logits[..., : len(base_tok)], base(ids).logits)


def test_errors_leave_nothing_behind(base_dir, tmp_path):
    out = tmp_path / "ext"
    with pytest.raises(SystemExit, match="num_units"):
        main(["--base_dir", str(base_dir), "--out_dir", str(out), "--num_units", "0"])
    main(["--base_dir", str(base_dir), "--out_dir", str(out), "--num_units", "4"])
    with pytest.raises(SystemExit, match="already has"):
        main(["--base_dir", str(out), "--out_dir", str(tmp_path / "twice"), "--num_units", "4"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--base_dir", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "x"), "--num_units", "4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]
