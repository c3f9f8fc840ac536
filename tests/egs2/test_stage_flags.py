"""llm_asr.sh's asr.sh-style flags: --skip_data_prep/--skip_train/--skip_eval/--skip_packing switch
off their stages (saying so), and stage 14 packs the model with the decode config and results."""

import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packing"))
from packing_fixtures import make_experiment  # noqa: E402

COMMON = ["--train_set", "train", "--valid_set", "dev", "--test_sets", "test", "--asr_config", "asr.yaml"]


def _run(r, env, *opts):
    proc = subprocess.run(["./llm_asr.sh", *COMMON, *opts], cwd=r, capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def test_skip_flags_switch_their_stages_off(tmp_path, make_recipe, recipe_env):
    r = make_recipe(tmp_path, {"asr.yaml": "encoder: transformer\n"})
    rc, out = _run(
        r,
        recipe_env,
        "--stage",
        "1",
        "--stop_stage",
        "14",
        "--skip_data_prep",
        "true",
        "--skip_train",
        "true",
        "--skip_eval",
        "true",
    )
    assert rc == 0, out[-3000:]
    expected = {
        1: "skip_data_prep",
        2: "skip_data_prep",
        4: "skip_data_prep",
        5: "skip_data_prep",
        6: "skip_train",
        7: "skip_train",
        10: "skip_train",
        11: "skip_train",
        8: "skip_eval",
        12: "skip_eval",
        13: "skip_eval",
        14: "skip_packing",
    }  # packing: off by default
    for n, flag in expected.items():
        assert f"Stage {n} skipped (--{flag} true)" in out, n
    assert "Stage 9 done" in out  # no flag covers stage 9 (nothing to build here)
    assert not (r / "data").exists() and not (r / "exp").exists()


def test_packing_stage(tmp_path, make_recipe, recipe_env):
    r = make_recipe(tmp_path, {"asr.yaml": "encoder: transformer\n"})
    rc, out = _run(r, recipe_env, "--stage", "14", "--stop_stage", "14", "--skip_packing", "false")
    assert rc != 0 and "exp/asr_asr/valid.acc.ave.pth not found: run stage 11 first" in out

    e = make_experiment(r)
    e["exp"].rename(r / "exp" / "asr_asr")
    (r / "exp" / "RESULTS.md").write_text("|test|12.5|\n")
    score = r / "exp" / "asr_asr" / "decode_decode_valid.acc.ave" / "test" / "score"
    score.mkdir(parents=True)
    (score / "result.txt").write_text("utt1 ok\n")
    rc, out = _run(
        r,
        recipe_env,
        "--stage",
        "14",
        "--stop_stage",
        "14",
        "--skip_packing",
        "false",
        "--inference_config",
        "decode.yaml",
        "--nbest",
        "3",
        "--inference_args",
        "--beam_size 4",
    )
    assert rc == 0, out[-3000:]
    with zipfile.ZipFile(r / "exp" / "asr_asr" / "asr_asr_decode_valid.acc.ave.zip") as z:
        names = set(z.namelist())
        decode = z.read("decode.yaml").decode()
    assert {
        "results/exp/RESULTS.md",
        "results/exp/asr_asr/decode_decode_valid.acc.ave/test/score/result.txt",
        "datastore/manifest.json",
        "model.safetensors",
    } <= names
    assert "datastore/index.faiss" not in names  # --pack_datastore false
    assert "nbest: 3" in decode and "beam_size: 4" in decode  # --inference_args win over the config's 3
