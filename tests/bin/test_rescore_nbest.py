"""rescore_nbest CLI end to end on a tiny local LLM: tune on dev, apply to test, score_wer
reads the output; speech+text with units; clear errors on bad input."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rescoring"))
from rescoring_tiny_lm import build_knnlm_memory, build_tiny_lm_dirs  # noqa: E402

from espnet_llm_plugin.bin import rescore_nbest  # noqa: E402
from espnet_llm_plugin.bin.score_wer import score_files  # noqa: E402
from espnet_llm_plugin.rescoring.nbest import Hypothesis, read_espnet_nbest, read_nbest_jsonl, write_espnet_nbest  # noqa: E402

REFS = {"u1": "the cat sat on the mat", "u2": "a dog ran home", "u3": "", "u4": "one big red dog"}
NBEST = {
    "u1": [
        Hypothesis("the cat sat on mat", -1.0),
        Hypothesis("the cat sat on the mat", -1.1),
        Hypothesis("cat sat on the mat", -1.3),
    ],
    "u2": [Hypothesis("a dog ran", -0.5), Hypothesis("a dog ran home", -0.6), Hypothesis("dog ran home", -0.9)],
    "u3": [Hypothesis("", -0.2), Hypothesis("the", -0.3)],
    "u4": [Hypothesis("one big red dog", -0.4), Hypothesis("one big red", -0.45)],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rescore_cli")
    lms = build_tiny_lm_dirs(root)
    write_espnet_nbest(NBEST, root / "decode")
    (root / "text").write_text("".join(f"{u} {t}\n" if t else f"{u}\n" for u, t in REFS.items()))
    (root / "units").write_text("u1 1 2 3\nu2 4 5\nu3\nu4 7 0\n")
    return root, lms


def run_cli(args):
    rescore_nbest.main([str(a) for a in args])


def test_tune_then_apply_and_score(setup, tmp_path):
    root, lms = setup
    weights = tmp_path / "conf" / "weights.yaml"
    run_cli(
        [
            "--nbest_dir",
            root / "decode",
            "--lm_path",
            lms["text"],
            "--ref_text",
            root / "text",
            "--tune",
            "true",
            "--weights_config",
            weights,
            "--out_dir",
            tmp_path / "dev",
            "--lm_weights",
            "0,0.5,1",
            "--length_bonuses",
            "0,1",
            "--batch_size",
            "3",
            "--device",
            "auto",
        ]
    )
    assert weights.is_file()
    summary = json.loads((tmp_path / "dev" / "wer.json").read_text())
    assert summary["rescored"]["errors"] <= summary["first_pass"]["errors"]
    assert summary["oracle"]["errors"] <= summary["rescored"]["errors"]
    assert len(summary["grid"]) == 6
    # the out dir is an ESPnet decode dir that score_wer and our reader take
    result = score_files(root / "text", tmp_path / "dev" / "text")
    assert result["wer"]["errors"] == summary["rescored"]["errors"]
    rescored = read_espnet_nbest(tmp_path / "dev")
    assert read_nbest_jsonl(tmp_path / "dev" / "nbest.jsonl") == rescored
    assert all({"lm", "first_pass"} <= set(h.scores) for hs in rescored.values() for h in hs)
    assert all(len(rescored[u]) == len(NBEST[u]) for u in NBEST)

    # apply the saved weights to another set (a JSONL this time, no references)
    (tmp_path / "test.jsonl").write_text((tmp_path / "dev" / "nbest.jsonl").read_text())
    run_cli(
        [
            "--nbest_jsonl",
            tmp_path / "test.jsonl",
            "--lm_path",
            lms["text"],
            "--weights_config",
            weights,
            "--out_dir",
            tmp_path / "test",
        ]
    )
    assert (tmp_path / "test" / "text").read_text() == (tmp_path / "dev" / "text").read_text()


def test_weight_zero_reproduces_first_pass(setup, tmp_path):
    root, lms = setup
    (tmp_path / "w.yaml").write_text("first_pass_weight: 1.0\nlm_weight: 0.0\nlength_bonus: 0.0\n")
    run_cli(
        [
            "--nbest_dir",
            root / "decode",
            "--lm_path",
            lms["text"],
            "--weights_config",
            tmp_path / "w.yaml",
            "--out_dir",
            tmp_path / "out",
        ]
    )
    assert (tmp_path / "out" / "text").read_text() == (root / "decode" / "text").read_text()


def test_speech_text_rescoring_uses_units(setup, tmp_path):
    root, lms = setup
    (tmp_path / "w.yaml").write_text("first_pass_weight: 1.0\nlm_weight: 1.0\nlength_bonus: 0.0\n")
    outs = []
    for i, units in enumerate(["u1 1 2 3\nu2 4 5\nu3\nu4 7 0\n", "u1 6 6\nu2 0\nu3 1\nu4 2 2 2\n"]):
        (tmp_path / f"units{i}").write_text(units)
        run_cli(
            [
                "--nbest_dir",
                root / "decode",
                "--lm_path",
                lms["speech_text"],
                "--units",
                tmp_path / f"units{i}",
                "--weights_config",
                tmp_path / "w.yaml",
                "--out_dir",
                tmp_path / f"out{i}",
            ]
        )
        outs.append(read_nbest_jsonl(tmp_path / f"out{i}" / "nbest.jsonl"))
    lm0 = sorted(h.scores["lm"] for h in outs[0]["u1"])
    lm1 = sorted(h.scores["lm"] for h in outs[1]["u1"])
    assert lm0 != pytest.approx(lm1, abs=1e-3)


@pytest.mark.parametrize(
    "case, match",
    [
        ("unknown_utt", "1 utterance\\(s\\) not in .*ref, e.g. 'u9'"),
        ("units_mismatch", "no units for .*'u1'"),
        ("lm_without_units", "no speech/unit tokens"),
        ("tune_without_ref", "--tune true needs --ref_text"),
        ("missing_weights", "does not exist"),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(setup, tmp_path, capsys, case, match):
    root, lms = setup
    (tmp_path / "w.yaml").write_text("first_pass_weight: 1.0\nlm_weight: 1.0\nlength_bonus: 0.0\n")
    args = [
        "--nbest_dir",
        root / "decode",
        "--lm_path",
        lms["text"],
        "--weights_config",
        tmp_path / "w.yaml",
        "--out_dir",
        tmp_path / "out",
    ]
    if case == "unknown_utt":
        (tmp_path / "ref").write_text("u1 a\nu2 b\nu3\nu4 c\n")
        nb = dict(NBEST, u9=[Hypothesis("x", -1.0)])
        write_espnet_nbest(nb, tmp_path / "dec9")
        args[1] = tmp_path / "dec9"
        args += ["--ref_text", tmp_path / "ref"]
    elif case == "units_mismatch":
        (tmp_path / "units").write_text("other1 1 2\nother2 3\n")
        args[3] = lms["speech_text"]
        args += ["--units", tmp_path / "units"]
    elif case == "lm_without_units":
        args += ["--units", root / "units"]
    elif case == "tune_without_ref":
        args += ["--tune", "true"]
    elif case == "missing_weights":
        args[5] = tmp_path / "none.yaml"
    with pytest.raises(SystemExit) as e:
        run_cli(args)
    assert "rescore_nbest: error" in str(e.value)
    import re

    assert re.search(match, str(e.value)), str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def knn_memory(setup, tmp_path_factory):
    """A kNN-LM datastore keyed by the text LM."""
    return build_knnlm_memory(setup[1]["text"], tmp_path_factory.mktemp("knn") / "memory")


def test_knnlm_rescoring_tunes_applies_and_guards_its_weights(setup, knn_memory, tmp_path):
    (root, lms), ds = setup, knn_memory
    weights = tmp_path / "weights.yaml"
    common = ["--nbest_dir", root / "decode", "--lm_path", lms["text"], "--weights_config", weights]
    knn = ["--knnlm_datastore", ds, "--knnlm_k", "4"]
    run_cli(common + knn + ["--ref_text", root / "text", "--tune", "true", "--out_dir", tmp_path / "dev"])
    summary = json.loads((tmp_path / "dev" / "wer.json").read_text())
    assert summary["knnlm"]["datastore"] == str(ds) and summary["knnlm"]["k"] == 4
    assert summary["oracle"]["errors"] <= summary["rescored"]["errors"] <= summary["first_pass"]["errors"]
    rescored = read_espnet_nbest(tmp_path / "dev")
    assert all({"lm", "lm_base"} <= set(h.scores) for hs in rescored.values() for h in hs)
    run_cli(common + knn + ["--out_dir", tmp_path / "test"])
    assert (tmp_path / "test" / "text").read_text() == (tmp_path / "dev" / "text").read_text()
    # weights tuned with the memory are not applied without it, nor with other settings
    for other in ([], ["--knnlm_datastore", ds, "--knnlm_k", "8"]):
        with pytest.raises(SystemExit, match="tuned with kNN-LM"):
            run_cli(common + other + ["--out_dir", tmp_path / "x"])
    with pytest.raises(SystemExit, match="need --knnlm_datastore"):
        run_cli(common + ["--knnlm_k", "4", "--out_dir", tmp_path / "x"])
    with pytest.raises(SystemExit, match="--knnlm_lambdas is a grid"):
        run_cli(common + knn + ["--knnlm_lambdas", "0.2,0.4", "--knnlm_lambda", "0.3", "--out_dir", tmp_path / "x"])
    with pytest.raises(SystemExit, match="is not the key encoder"):
        run_cli(common[:3] + [lms["speech_text"]] + common[4:] + knn + ["--out_dir", tmp_path / "x"])
    assert not (tmp_path / "x").exists()


def test_knnlm_lambda_is_tuned_with_the_weights_and_applied_with_them(setup, knn_memory, tmp_path):
    (root, lms), ds = setup, knn_memory
    weights = tmp_path / "weights.yaml"
    common = ["--nbest_dir", root / "decode", "--lm_path", lms["text"], "--weights_config", weights]
    common += ["--knnlm_datastore", ds, "--lm_weights", "0,0.5,1", "--length_bonuses", "0"]
    tune = ["--ref_text", root / "text", "--tune", "true", "--out_dir", tmp_path / "dev"]
    run_cli(common + ["--knnlm_lambdas", "0.1,0.9"] + tune)
    summary = json.loads((tmp_path / "dev" / "wer.json").read_text())
    assert summary["knnlm"]["lambda"] in (0.1, 0.9)
    assert sorted({row["knnlm_lambda"] for row in summary["grid"]}) == [0.1, 0.9] and len(summary["grid"]) == 6
    best = min(summary["grid"], key=lambda row: row["errors"])
    assert summary["rescored"]["errors"] == best["errors"]
    # applying reads the tuned lambda from the weights; another one is refused
    run_cli(common + ["--knnlm_lambdas", "0.1,0.9", "--out_dir", tmp_path / "test"])
    assert (tmp_path / "test" / "text").read_text() == (tmp_path / "dev" / "text").read_text()
    other = 0.9 if summary["knnlm"]["lambda"] == 0.1 else 0.1
    with pytest.raises(SystemExit, match="tuned with kNN-LM"):
        run_cli(common + ["--knnlm_lambda", str(other), "--out_dir", tmp_path / "x"])
