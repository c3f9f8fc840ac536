"""Whisper first pass on real Whisper tiny.en and espeak-ng speech: distinct beams, best first,
scores that are log-probabilities per token (checked by rescoring the 1-best by teacher
forcing), text in the recipe's form, and an ESPnet decode dir that the rescorer reads."""

import json

import pytest
import soundfile

from espnet_llm_plugin.decoding.whisper_first_pass import (
    WhisperFirstPassOptions,
    _per_token_logprob,
    decode_utterance,
    whisper_first_pass,
)
from espnet_llm_plugin.pretrained.ctranslate2_whisper import SAMPLING_RATE, log_mel, whisper_prompt
from espnet_llm_plugin.rescoring.nbest import read_espnet_nbest, read_score_info

pytestmark = [pytest.mark.real_model, pytest.mark.espeak]

SENTENCES = {"u1": "the cat sat on the mat", "u2": "please call stella and ask her to bring these things"}


@pytest.fixture(scope="module")
def clips():
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak
    from espnet_llm_plugin.fileio.audio import resample

    out = {}
    for utt, text in SENTENCES.items():
        wav, sr = run_espeak(text, "en-us", 160, 50)
        out[utt] = resample(wav, sr, SAMPLING_RATE)
    return out


def test_beams_are_distinct_best_first_and_scored_per_token(whisper_tiny_en, clips):
    import torch

    model, processor = whisper_tiny_en
    hyps = decode_utterance(model, processor, clips["u1"], WhisperFirstPassOptions(beam_size=4, nbest=4))
    assert len(hyps) >= 2 and len({tuple(h["tokens"]) for h in hyps}) == len(hyps)
    assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)
    assert hyps[0]["raw"] == "The cat sat on the mat."
    # the beam score is the per-token log-probability of text + end token, as teacher forcing gives it
    prompt = whisper_prompt(processor.tokenizer, False)
    with torch.no_grad():
        encoded = model.model.encoder(log_mel(processor, clips["u1"])).last_hidden_state
    forced = _per_token_logprob(model, encoded, prompt, hyps[0]["tokens"])
    assert hyps[0]["num_tokens"] == len(hyps[0]["tokens"]) + 1
    assert forced == pytest.approx(hyps[0]["score"], abs=5e-4)


def test_decode_dir_in_recipe_form_reads_back_as_totals(whisper_tiny_en_dir, clips, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for utt, wav in clips.items():
        soundfile.write(tmp_path / f"{utt}.wav", wav, SAMPLING_RATE)
    (data / "wav.scp").write_text("".join(f"{u} {tmp_path / (u + '.wav')}\n" for u in clips))
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in clips))
    out = tmp_path / "decode"
    summary = whisper_first_pass(whisper_tiny_en_dir, data, out, WhisperFirstPassOptions(beam_size=3, nbest=2))
    assert summary["utterances"] == 2 and summary["audio_s"] > 4
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert text["u1"] == "THE CAT SAT ON THE MAT"
    assert text["u2"].startswith("PLEASE CALL") and text["u2"] == text["u2"].upper() and "." not in text["u2"]
    raw = (out / "1best_recog" / "text_raw").read_text()
    assert "u1 The cat sat on the mat." in raw
    info = read_score_info(out)
    assert info["score_kind"] == "per_token" and info["beam_size"] == 3
    per_token = read_espnet_nbest(out, first_pass_score="as_is")
    total = read_espnet_nbest(out)
    for utt in clips:
        assert 1 <= len(total[utt]) <= 2
        for a, b in zip(per_token[utt], total[utt]):
            assert b.score == pytest.approx(a.score * a.scores["num_tokens"])
    assert json.loads((out / "timing.json").read_text())["elapsed_s"] > 0


def test_options_are_checked():
    with pytest.raises(ValueError, match="nbest <= beam_size"):
        WhisperFirstPassOptions(beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="recipe_case"):
        WhisperFirstPassOptions(case="title")
