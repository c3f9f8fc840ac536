"""Stage outputs are keyed on the options that made them: stage 3 (audio formatting) records
``--fs`` and friends in ``dump/raw/<set>/.stage_options`` and refuses to reuse a dump made with
other options or from changed data (before: a changed ``--fs`` silently kept the 16 kHz dump);
stage 4 (validation) names an utterance too short to decode and records what it validated."""

import subprocess

import numpy as np
import soundfile


def _data_dir(root, name, utt, sr=16000, seconds=0.3):
    d = root / "data" / name
    d.mkdir(parents=True)
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(root / f"{utt}.wav", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sr)
    (d / "wav.scp").write_text(f"{utt} {root / f'{utt}.wav'}\n")
    (d / "text").write_text(f"{utt} hello\n")
    (d / "utt2spk").write_text(f"{utt} {utt}\n")


def _format(r, env, *opts):
    return subprocess.run(
        [
            "./llm_asr.sh",
            "--stage",
            "2",
            "--stop_stage",
            "4",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--test_sets",
            "",
            "--asr_config",
            "asr.yaml",
            *opts,
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_formatted_output_is_keyed_on_fs_and_inputs(tmp_path, make_recipe, recipe_env):
    r = make_recipe(tmp_path, {"asr.yaml": "encoder: transformer\n"})
    _data_dir(r, "train", "utt_a")
    _data_dir(r, "dev", "utt_b")

    proc = _format(r, recipe_env, "--fs", "16000")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stamp = (r / "dump/raw/train/.stage_options").read_text()
    assert "fs=16000" in stamp and "source=data/train" in stamp
    assert soundfile.info(r / "dump/raw/train/data/utt_a.wav").samplerate == 16000

    proc = _format(r, recipe_env, "--fs", "16000")  # same options: reused
    assert proc.returncode == 0 and "dump/raw/train is complete, skipping" in proc.stdout + proc.stderr

    proc = _format(r, recipe_env, "--fs", "8000")  # another rate: refused, naming both
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dump/raw/train was made with: fs=16000" in out and "this run asks for:   fs=8000" in out
    assert soundfile.info(r / "dump/raw/train/data/utt_a.wav").samplerate == 16000  # untouched

    (r / "data/dev/text").write_text("utt_b goodbye\n")  # changed data: the dev dump is stale
    proc = _format(r, recipe_env, "--fs", "16000")
    assert proc.returncode != 0 and "dump/raw/dev was made with" in proc.stdout + proc.stderr

    for d in ("train", "dev"):  # deleting the dumps redoes them at the new rate
        subprocess.run(["rm", "-rf", str(r / "dump/raw" / d)], check=True)
    proc = _format(r, recipe_env, "--fs", "8000")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert soundfile.info(r / "dump/raw/train/data/utt_a.wav").samplerate == 8000
    assert "fs=8000" in (r / "dump/raw/dev/.stage_options").read_text()


def test_validation_names_an_utterance_too_short_to_decode(tmp_path, make_recipe, recipe_env):
    # 5 ms of audio leaves the encoder no frame: it used to pass formatting and crash decoding unnamed
    r = make_recipe(tmp_path, {"asr.yaml": "encoder: transformer\n"})
    _data_dir(r, "train", "utt_a")
    _data_dir(r, "dev", "utt_tiny", seconds=0.005)
    proc = _format(r, recipe_env, "--fs", "16000")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "utt_tiny" in out and "5 ms" in out
    assert not (r / "dump/raw/dev/.validated").exists()  # not recorded: the rerun checks again
    assert (r / "dump/raw/train/.validated").is_file()
    proc = _format(r, recipe_env, "--fs", "16000", "--validate_min_duration", "0")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "validate_min_duration=0" in (r / "dump/raw/dev/.validated").read_text()
    proc = _format(r, recipe_env, "--fs", "16000", "--validate_min_duration", "0")  # nothing new: skipped
    assert proc.returncode == 0 and "dump/raw/train was validated, skipping" in proc.stdout + proc.stderr
