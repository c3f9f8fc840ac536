"""train_text_lm CLI: Kaldi/plain inputs, loadable output, re-run skip, bad inputs."""

import json
import logging

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from espnet_llm_plugin.bin.train_text_lm import main

SENTENCES = [
    f"{s} {v}" for s in ["anna", "peter", "the dog", "we"] for v in ["reads a book", "walks home", "eats an apple"]
]
TINY = [
    "--vocab_size",
    "300",
    "--hidden_size",
    "32",
    "--num_layers",
    "1",
    "--num_heads",
    "2",
    "--max_position_embeddings",
    "128",
    "--max_steps",
    "30",
    "--batch_size",
    "8",
    "--seq_len",
    "32",
    "--lr",
    "1e-2",
    "--warmup_steps",
    "5",
    "--eval_every",
    "15",
]


@pytest.fixture
def data(tmp_path):
    plain = tmp_path / "train.txt"
    plain.write_text("\n".join(SENTENCES * 5) + "\n\n")  # a trailing empty line
    kaldi = tmp_path / "dev_text"
    rows = [f"utt{i:03d} {s}" for i, s in enumerate(SENTENCES[::-1])] + ["noise001", "noise002 "]
    kaldi.write_text("\n".join(rows) + "\n")  # non-speech segments: empty transcripts
    return plain, kaldi


def run(plain, kaldi, out, *extra):
    main(
        [
            "--train_text",
            str(plain),
            "--dev_text",
            str(kaldi),
            "--dev_has_ids",
            "true",
            "--out_dir",
            str(out),
            *TINY,
            *extra,
        ]
    )


def test_train_load_and_skip(data, tmp_path, caplog):
    plain, kaldi = data
    out = tmp_path / "exp" / "lm"
    with caplog.at_level(logging.INFO):
        run(plain, kaldi, out)
    log = json.loads((out / "train_log.json").read_text())
    assert log["final_dev_ppl"] < log["initial_dev_ppl"] / 10
    assert log["dev_lines"] == len(SENTENCES)  # the empty transcripts were skipped
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in out.iterdir())
    assert not (tmp_path / "exp" / "lm.ckpt").exists()  # removed when done
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["lm"]  # no temp left

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("the dog walks home")["input_ids"]) == "the dog walks home"
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 1

    # same settings and data: skipped, output untouched
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(plain, kaldi, out, "--log_every", "3")  # logging options do not count
    assert "skipping" in caplog.text
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp

    # changed data: trained again
    plain.write_text("\n".join(SENTENCES * 6) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(plain, kaldi, out, "--max_steps", "2")
    assert "skipping" not in caplog.text
    assert json.loads((out / "train_args.json").read_text())["args"]["max_steps"] == 2


def test_kaldi_train_text_and_several_files(data, tmp_path):
    plain, kaldi = data
    out = tmp_path / "lm"
    main(
        [
            "--train_text",
            str(kaldi),
            "--train_text",
            str(kaldi),
            "--has_ids",
            "true",
            "--dev_text",
            str(kaldi),
            "--out_dir",
            str(out),
            *TINY,
            "--max_steps",
            "2",
            "--keep_checkpoint",
            "true",
        ]
    )
    log = json.loads((out / "train_log.json").read_text())
    assert log["train_lines"] == 2 * len(SENTENCES)
    ckpt = tmp_path / "lm.ckpt"
    assert {p.suffix for p in ckpt.iterdir()} <= {".safetensors", ".json"}


def test_bad_inputs(data, tmp_path, capsys):
    plain, kaldi = data
    out = tmp_path / "lm"
    with pytest.raises(SystemExit, match=r"--train_text .*missing\.txt: file not found"):
        main(["--train_text", str(tmp_path / "missing.txt"), "--dev_text", str(kaldi), "--out_dir", str(out)])
    only_ids = tmp_path / "noise_text"
    only_ids.write_text("noise001\nnoise002   \n\n")
    with pytest.raises(SystemExit, match=r"--dev_text .*noise_text: no non-empty line after"):
        main(["--train_text", str(plain), "--dev_text", str(only_ids), "--dev_has_ids", "true", "--out_dir", str(out)])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(SystemExit, match=r"empty\.txt: no non-empty line"):
        main(["--train_text", str(empty), "--dev_text", str(plain), "--out_dir", str(out)])
    with pytest.raises(SystemExit, match="--hidden_size 30 is not divisible by --num_heads 4"):
        main(["--train_text", str(plain), "--dev_text", str(plain), "--out_dir", str(out), "--hidden_size", "30"])
    with pytest.raises(SystemExit, match="--vocab_size 100 is too small"):
        main(
            [
                "--train_text",
                str(plain),
                "--dev_text",
                str(plain),
                "--out_dir",
                str(out),
                "--vocab_size",
                "100",
                "--max_steps",
                "1",
            ]
        )
    assert not out.exists()


def test_warns_about_utterance_ids(data, tmp_path, caplog):
    plain, kaldi = data
    with caplog.at_level(logging.WARNING):
        main(
            [
                "--train_text",
                str(plain),
                "--dev_text",
                str(kaldi),
                "--out_dir",
                str(tmp_path / "lm"),
                *TINY,
                "--max_steps",
                "1",
            ]
        )
    assert "pass --dev_has_ids true" in caplog.text
