"""The recipe with --whisper_dir: stage 12 decodes a data set with a prepared Whisper (n-best,
per-token scores; split over --inference_nj jobs and merged), rescores the lists with SmolLM2
(totals added to totals, weights tuned on the valid set), and stage 13 scores both into
RESULTS.md; no ASR model is trained. Then stage 9 builds a text memory with SmolLM2 keys and
stage 12 rescores the same lists with its kNN-LM (--rescore_knnlm) into a directory of its own."""

import json
import subprocess

import numpy as np
import pytest
import soundfile

pytestmark = [pytest.mark.slow, pytest.mark.espeak, pytest.mark.real_model]

SENTENCES = {"u1": "THE CAT SAT ON THE MAT", "u2": "A BIG DOG RAN HOME", "u3": "PLEASE CALL STELLA"}


def _data(recipe):
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak

    d = recipe / "data" / "test"
    d.mkdir(parents=True)
    for utt, text in SENTENCES.items():
        wav, sr = run_espeak(text.lower(), "en-us", 160, 50)
        soundfile.write(recipe / f"{utt}.wav", wav.astype(np.float32), sr)
    (d / "wav.scp").write_text("".join(f"{u} {recipe / (u + '.wav')}\n" for u in SENTENCES))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in SENTENCES.items()))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in SENTENCES))
    (recipe / "data" / ".data_prep.done").touch()


def test_whisper_first_pass_rescored_and_scored(tmp_path, make_recipe, recipe_env, whisper_tiny_en_dir, smollm2_dir):
    r = make_recipe(tmp_path, {})
    _data(r)
    options = "--stage 3 --stop_stage 13 --train_set test --valid_set test --test_sets test --nj 1 --inference_nj 2"
    proc = subprocess.run(
        ["./llm_asr.sh", *options.split(), "--nbest", "3", "--whisper_dir", str(whisper_tiny_en_dir),
         "--rescore_lm", str(smollm2_dir), "--rescore_args", "--lm_weights 0,0.1 --length_bonuses 0",
         "--score_normalised", "true"],
        cwd=r, capture_output=True, text=True, timeout=900, env=recipe_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Stage 11: --whisper_dir: decoding with a pretrained Whisper, no ASR training" in proc.stdout
    dec = r / "exp" / f"asr_whisper_{whisper_tiny_en_dir.name}" / "decode_beam3" / "test"
    assert json.loads((dec / "score_info.json").read_text())["score_kind"] == "per_token"
    assert "u1 THE CAT SAT ON THE MAT" in (dec / "text").read_text()
    assert len((dec / "text").read_text().splitlines()) == 3  # two jobs (--inference_nj 2), merged
    assert (dec / "logs" / "decode.2.log").is_file()
    result = json.loads((dec / "score" / "result.json").read_text())
    assert result["wer"]["utterances"] == 3
    normalised = json.loads((dec / "score_english" / "result.json").read_text())
    assert normalised["normaliser"]["english"] and normalised["wer"]["errors"] <= result["wer"]["errors"]
    rescored = list((dec.parent.parent).glob("decode_beam3_rescore_*/test/score/result.json"))
    assert len(rescored) == 1 and (rescored[0].parent.parent / "score_english" / "result.json").is_file()
    results = (r / "exp" / "RESULTS.md").read_text()
    assert f"asr_whisper_{whisper_tiny_en_dir.name}" in results

    # the same lists rescored with the kNN-LM of a SmolLM2-keyed memory of the transcripts
    (r / "data" / "memory.txt").write_text("".join(t.lower() + "\n" for t in SENTENCES.values()))
    common = ["--train_set", "test", "--valid_set", "test", "--test_sets", "test", "--nj", "1", "--inference_nj", "1",
              "--nbest", "3", "--whisper_dir", str(whisper_tiny_en_dir)]  # fmt: skip
    proc = subprocess.run(
        ["./llm_asr.sh", *common, "--stage", "9", "--stop_stage", "9", "--datastore_memory", "data/memory.txt",
         "--datastore_key_encoder", str(smollm2_dir), "--datastore_tag", "memory_smollm2"],
        cwd=r, capture_output=True, text=True, timeout=900, env=recipe_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run(
        ["./llm_asr.sh", *common, "--stage", "12", "--stop_stage", "13", "--rescore_lm", str(smollm2_dir),
         "--rescore_knnlm", "exp/datastore_memory_smollm2", "--rescore_args", "--lm_weights 0,0.5 --length_bonuses 0"],
        cwd=r, capture_output=True, text=True, timeout=900, env=recipe_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    knn = dec.parent.parent / f"decode_beam3_rescore_{smollm2_dir.name}_knnlm_datastore_memory_smollm2" / "test"
    summary = json.loads((knn / "wer.json").read_text())
    assert summary["knnlm"]["datastore"] == "exp/datastore_memory_smollm2"
    assert summary["rescored"]["errors"] <= summary["first_pass"]["errors"]
    assert (knn / "score" / "result.json").is_file()
