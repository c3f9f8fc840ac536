"""knnlm_perplexity CLI on a tiny LM (its library: tests/retrieval/test_knnlm_perplexity.py):
JSON layout, lambda=0 is the base perplexity exactly, an existing datastore gives the same
numbers as a memory built here, errors name the input."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rescoring"))
from rescoring_tiny_lm import build_tiny_lm_dirs  # noqa: E402

from espnet_llm_plugin.bin.knnlm_perplexity import main  # noqa: E402

MEMORY = ["the cat sat on the mat", "the big dog ran home", "a red cat ran to the dog", "one small dog sat on a mat"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ppl")
    lm = build_tiny_lm_dirs(d)["text"]
    (d / "memory.txt").write_text("\n".join(MEMORY * 2) + "\n")
    (d / "in_memory.txt").write_text("\n".join(MEMORY[:2]) + "\n")
    (d / "text").write_text("utt1 THE RED DOG SAT ON THE MAT\nutt2 TWO BLUE CATS RAN HOME\nutt3\n")  # Kaldi, upper case
    return d, lm


def run(d, lm, out, *extra):
    main(
        [
            "--lm_path",
            str(lm),
            "--eval_text",
            f"in_memory={d / 'in_memory.txt'}",
            "--eval_text_file",
            f"held_out={d / 'text'}",
            "--lambdas",
            "0,0.5,1",
            "--temperatures",
            "0.05,0.5",
            "--k",
            "2,8",
            "--window",
            "6",
            "--stride",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--text_form",
            '{"case": "lower"}',
            *extra,
        ]
    )
    return json.loads(Path(out).read_text())


def test_json_and_lambda_zero_is_base(files, tmp_path, capsys):
    d, lm = files
    res = run(d, lm, tmp_path / "out" / "ppl.json", "--memory_text", str(d / "memory.txt"))
    assert set(res["sets"]) == {"in_memory", "held_out"}
    assert res["memory"]["count"] == 2 * sum(len(t.split()) + 1 for t in MEMORY)
    assert res["text_form"]["case"] == "lower" and res["framing"] == {"start": ["<bos>"], "end": ["<eos>"]}
    assert res["memory"]["distance_scale"] > 0 and res["temperature_unit"] == "distance_scale"
    held = res["sets"]["held_out"]
    assert (held["texts"], held["words"], held["tokens"]) == (2, 12, 14)  # utt3 is empty: skipped
    for name, s in res["sets"].items():
        assert len(s["grid"]) == 2 * 3 * 2
        base = s["base"]
        for g in s["grid"]:
            if g["lambda"] == 0.0:  # exactly the base
                assert (g["ppl_token"], g["ppl_word"], g["logprob"]) == (
                    base["ppl_token"],
                    base["ppl_word"],
                    base["logprob"],
                )
        assert base["ppl_token"] == pytest.approx(math.exp(-base["logprob"] / s["tokens"]))
        assert base["ppl_word"] == pytest.approx(math.exp(-base["logprob"] / (s["words"] + s["texts"])))
        assert s["best"]["ppl_token"] == min(g["ppl_token"] for g in s["grid"] if g["ppl_token"] is not None)
    # texts in memory: the kNN-LM is far better than the LM alone
    mem = res["sets"]["in_memory"]
    assert mem["best"]["ppl_token"] < 0.5 * mem["base"]["ppl_token"]
    printed = capsys.readouterr().out
    assert "== in_memory" in printed and "best:" in printed and "lambda \\ T" in printed
    # deterministic
    assert run(d, lm, tmp_path / "again.json", "--memory_text", str(d / "memory.txt"))["sets"] == res["sets"]


def test_existing_datastore_gives_the_same_numbers(files, tmp_path):
    from espnet_llm_plugin.bin.build_datastore import main as build

    d, lm = files
    build(
        [
            "--memory_text",
            str(d / "memory.txt"),
            "--key_encoder",
            str(lm),
            "--window",
            "6",
            "--stride",
            "3",
            "--device",
            "cpu",
            "--out_dir",
            str(tmp_path / "ds"),
            "--text_form",
            '{"case": "lower"}',
        ]
    )
    built_here = run(d, lm, tmp_path / "a.json", "--memory_text", str(d / "memory.txt"))
    # the datastore's text form comes from its manifest (no --text_form needed)
    args = [
        "--lm_path",
        str(lm),
        "--eval_text",
        f"in_memory={d / 'in_memory.txt'}",
        "--eval_text_file",
        f"held_out={d / 'text'}",
        "--lambdas",
        "0,0.5,1",
        "--temperatures",
        "0.05,0.5",
        "--k",
        "2,8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "b.json"),
        "--datastore",
        str(tmp_path / "ds"),
    ]
    main(args)
    from_ds = json.loads((tmp_path / "b.json").read_text())
    assert from_ds["text_form"]["case"] == "lower"
    for name in built_here["sets"]:
        for a, b in zip(built_here["sets"][name]["grid"], from_ds["sets"][name]["grid"]):
            assert (a["k"], a["lambda"], a["temperature"]) == (b["k"], b["lambda"], b["temperature"])
            if a["ppl_token"] is None:  # lambda = 1 and a target no neighbour has
                assert b["ppl_token"] is None
            else:
                assert a["ppl_token"] == pytest.approx(b["ppl_token"], rel=1e-5)


def test_errors_name_the_input(files, tmp_path):
    d, lm = files
    with pytest.raises(SystemExit, match="either --datastore or a memory"):
        main(["--lm_path", str(lm), "--eval_text", f"x={d / 'in_memory.txt'}", "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="missing.txt"):
        main(
            [
                "--lm_path",
                str(lm),
                "--memory_text",
                str(d / "memory.txt"),
                "--eval_text",
                f"x={d / 'missing.txt'}",
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
    with pytest.raises(SystemExit, match="at least one --eval_text"):
        main(["--lm_path", str(lm), "--memory_text", str(d / "memory.txt"), "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="given twice"):
        main(
            [
                "--lm_path",
                str(lm),
                "--memory_text",
                str(d / "memory.txt"),
                "--eval_text",
                f"x={d / 'in_memory.txt'}",
                "--eval_text",
                f"x={d / 'in_memory.txt'}",
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
    with pytest.raises(SystemExit):  # argparse: NAME=PATH
        main(
            [
                "--lm_path",
                str(lm),
                "--memory_text",
                str(d / "memory.txt"),
                "--eval_text",
                "nopath",
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
    assert not (tmp_path / "o.json").exists()
