"""train_mwer CLI end to end: LoRA MWER training on a tiny local LLM writes a plain HF dir
(LoRA merged) that rescore_nbest loads; bad input fails clearly."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rescoring"))
from rescoring_tiny_lm import build_tiny_lm_dirs  # noqa: E402

from espnet_llm_plugin.bin import rescore_nbest, train_mwer  # noqa: E402
from espnet_llm_plugin.rescoring.nbest import Hypothesis, write_espnet_nbest, write_nbest_jsonl  # noqa: E402

REFS = {"u1": "the cat sat", "u2": "a dog ran home", "u3": "one two"}
NBEST = {
    "u1": [Hypothesis("the cat sad", -1.0), Hypothesis("the cat sat", -1.2), Hypothesis("cat sat", -2.0)],
    "u2": [Hypothesis("a dog ran", -0.5), Hypothesis("a dog ran home", -0.7)],
    "u3": [Hypothesis("one", -0.5), Hypothesis("one two", -0.6)],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mwer_cli")
    lms = build_tiny_lm_dirs(root)
    write_espnet_nbest(NBEST, root / "decode")
    write_nbest_jsonl(NBEST, root / "dev.jsonl")
    (root / "text").write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))
    (root / "units").write_text("u1 1 2 3\nu2 4 5\nu3 6\n")
    return root, lms


def test_lora_training_writes_a_merged_hf_dir(setup, tmp_path):
    root, lms = setup
    out = tmp_path / "lm_mwer"
    train_mwer.main(
        [
            str(a)
            for a in [
                "--nbest_dir",
                root / "decode",
                "--ref_text",
                root / "text",
                "--units",
                root / "units",
                "--dev_nbest_jsonl",
                root / "dev.jsonl",
                "--dev_ref_text",
                root / "text",
                "--dev_units",
                root / "units",
                "--lm_path",
                lms["speech_text"],
                "--finetune",
                "lora",
                "--lora_r",
                "4",
                "--epochs",
                "1",
                "--lr",
                "0.01",
                "--ce_weight",
                "0.1",
                "--out_dir",
                out,
                "--seed",
                "0",
                "--device",
                "cpu",
            ]
        ]
    )
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()  # merged: a plain HF model
    log = json.loads((out / "mwer_log.json").read_text())
    assert [e["epoch"] for e in log] == [0, 1] and "dev_wer" in log[1] and "loss" in log[1]
    from safetensors.torch import load_file

    assert not any("lora" in k for k in load_file(out / "model.safetensors"))
    # the trained LM is usable by the rescorer (unit tokens kept)
    (tmp_path / "w.yaml").write_text("first_pass_weight: 1.0\nlm_weight: 0.5\nlength_bonus: 0.0\n")
    rescore_nbest.main(
        [
            str(a)
            for a in [
                "--nbest_dir",
                root / "decode",
                "--lm_path",
                out,
                "--units",
                root / "units",
                "--weights_config",
                tmp_path / "w.yaml",
                "--out_dir",
                tmp_path / "rescored",
            ]
        ]
    )
    assert (tmp_path / "rescored" / "text").is_file()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--dev_nbest_jsonl", "DEV"], "need --dev_ref_text"),
        (["--lm_weight", "0"], "lm_weight is 0"),
        (["--units", "BADUNITS"], "no units for .*'u1'"),
    ],
)
def test_bad_inputs(setup, tmp_path, extra, match):
    root, lms = setup
    (tmp_path / "badunits").write_text("x1 1\n")
    extra = [
        str(root / "dev.jsonl") if a == "DEV" else str(tmp_path / "badunits") if a == "BADUNITS" else a for a in extra
    ]
    with pytest.raises(SystemExit, match=match):
        train_mwer.main(
            [
                str(a)
                for a in [
                    "--nbest_dir",
                    root / "decode",
                    "--ref_text",
                    root / "text",
                    "--lm_path",
                    lms["text"],
                    "--out_dir",
                    tmp_path / "o",
                ]
            ]
            + extra
        )
    assert not (tmp_path / "o").exists()
