"""framing_sweep: log-likelihoods of texts under framings and text forms, and the CLI."""

import json
import math

import pytest
import torch
from tiny_models import tiny_llm

from espnet_llm_plugin.core.text_form import TextForm
from espnet_llm_plugin.lm.framing_sweep import format_table, recommend, sweep

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<|endoftext|>", ".", "the", "cat", "sat", "The", "THE", "CAT", "SAT"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("llm")
    model, fast = tiny_llm(
        WORDS, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, initializer_range=0.5
    )
    fast.save_pretrained(d)
    model.save_pretrained(d)
    return d, model.eval(), fast


def direct_nll(model, ids, first):
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    return -sum(logp[j - 1, ids[j]].item() for j in range(first, len(ids)))


def test_rows_equal_a_direct_computation(tiny):
    _, model, tok = tiny
    texts = ["THE CAT SAT", "THE CAT"]
    forms = {"lower": TextForm(case="lower"), "sentence.": TextForm(case="sentence", punctuation="final_period")}
    rows, notes = sweep(
        model,
        tok,
        texts,
        starts=[("<bos>",), ("<|endoftext|>",), ("<|im_start|>",)],
        ends=[("<eos>",), (".", "<|endoftext|>")],
        forms=forms,
        chat_prompt=None,
        batch_size=1,
    )
    assert any("<|im_start|>" in n for n in notes)  # not in this vocabulary: skipped, reported
    assert len(rows) == 2 * 2 * 2
    row = next(
        r for r in rows if r.start == "<|endoftext|>" and r.end == ". + <|endoftext|>" and r.text_form == "lower"
    )
    text_nll = end_nll = 0.0
    for text in texts:
        body = tok(text.lower(), add_special_tokens=False).input_ids
        text_nll += direct_nll(model, [4] + body, 1)
        end_nll += direct_nll(model, [4] + body + [5, 4], 1 + len(body))
    assert row.text_nll == pytest.approx(text_nll, rel=1e-4) and row.end_nll == pytest.approx(end_nll, rel=1e-4)
    assert row.words == 5 and not row.single_end_token
    assert row.word_ppl == pytest.approx(math.exp((text_nll + end_nll) / (5 + 2)), rel=1e-4)
    # "." then the end token in the end framing is the final period of the text form
    same = next(r for r in rows if r.start == "<|endoftext|>" and r.end == "<eos>" and r.text_form == "sentence.")
    assert same.text_tokens == row.text_tokens + 2


def test_recommend_picks_the_best_single_end_token_row(tiny):
    _, model, tok = tiny
    rows, _ = sweep(
        model,
        tok,
        ["THE CAT SAT"],
        starts=[("<bos>",), ("<|endoftext|>",)],
        ends=[("<eos>",), ("<|endoftext|>",), (".", "<eos>")],
        chat_prompt=None,
    )
    best = min((r for r in rows if r.single_end_token), key=lambda r: r.word_ppl)
    usage = recommend(rows)
    assert usage["framing"] == {"start": best.start_tokens, "end": best.end_tokens_list}
    assert TextForm.from_dict(usage["text_form"], "x") == TextForm.from_dict(
        {k: v for k, v in best.form.items() if k != "recipe_case"}, "x"
    )
    assert format_table(rows).count("\n") == len(rows) + 1


def test_cli_writes_table_and_json(tiny, tmp_path, capsys):
    from espnet_llm_plugin.bin.lm_framing_sweep import main

    d, _, _ = tiny
    text = tmp_path / "text"
    text.write_text("u1 THE CAT SAT\nu2 THE CAT\n")
    main(["--llm_path", str(d), "--text", str(text), "--has_ids", "true", "--out", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert "| start | end | text form |" in out and "recommended llm_usage.json" in out
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["sentences"] == 2 and record["recommended"]["framing"]["end"]
    assert any("chat template" in n for n in record["notes"])  # this tokenizer has none
