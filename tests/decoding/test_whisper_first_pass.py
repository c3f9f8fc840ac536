"""Whisper first pass: distinct beams, best first, scores that are log-probabilities per token
(checked by teacher forcing), text in the recipe's form, and an ESPnet decode dir (written
atomically, with score_info.json) that the rescorer reads back as totals.

Structure tests run on a tiny random Whisper (tiny_whisper.py); the real Whisper tiny.en is
checked on espeak-ng speech and on real recordings (1-best = Hugging Face's own greedy decode)."""

import json

import numpy as np
import pytest
import soundfile
import torch
from tiny_whisper import build_tiny_whisper_dir

from espnet_llm_plugin.decoding import whisper_first_pass as wfp
from espnet_llm_plugin.decoding.whisper_first_pass import (
    WhisperFirstPassOptions,
    decode_utterance,
    per_token_logprob,
    whisper_first_pass,
)
from espnet_llm_plugin.pretrained.ctranslate2_whisper import SAMPLING_RATE, load_whisper_dir, log_mel, whisper_prompt
from espnet_llm_plugin.rescoring.nbest import read_espnet_nbest, read_score_info


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_whisper_dir(tmp_path_factory.mktemp("tiny_whisper") / "whisper")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_whisper_dir(tiny_dir)


def _signal(seconds, seed):
    return (0.1 * np.random.RandomState(seed).randn(int(seconds * SAMPLING_RATE))).astype(np.float32)


def _data_dir(root, clips, sr=SAMPLING_RATE):
    """A Kaldi data dir of ``{utt: samples}`` (WAV files at ``sr``), no text."""
    data = root / "data"
    data.mkdir(parents=True)
    for utt, wav in clips.items():
        soundfile.write(root / f"{utt}.wav", wav, sr)
    (data / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u in clips))
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in clips))
    return data


def _forced(model, processor, wav, hyp):
    prompt = whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    with torch.no_grad():
        encoded = model.model.encoder(log_mel(processor, wav)).last_hidden_state
    return per_token_logprob(model, encoded, prompt, hyp["tokens"], hyp["ended"])


# ---------------------------------------------------------------------------------- tiny Whisper


def test_tiny_beams_are_distinct_sorted_and_scored_per_token(tiny):
    model, processor = tiny
    wav = _signal(2.0, 0)
    hyps = decode_utterance(model, processor, wav, WhisperFirstPassOptions(beam_size=4, nbest=4))
    assert len(hyps) == 4 and len({tuple(h["tokens"]) for h in hyps}) == 4
    assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)
    for h in hyps:  # the random model runs to the length limit: no end token is scored
        assert not h["ended"] and h["num_tokens"] == len(h["tokens"]) == model.config.max_target_positions - 2
        assert _forced(model, processor, wav, h) == pytest.approx(h["score"], abs=1e-4)
    short = decode_utterance(model, processor, wav, WhisperFirstPassOptions(beam_size=2, nbest=1, max_new_tokens=5))
    assert len(short) == 1 and len(short[0]["tokens"]) == 5
    greedy = decode_utterance(model, processor, wav, WhisperFirstPassOptions(beam_size=1, nbest=1))
    assert greedy[0]["score"] == pytest.approx(_forced(model, processor, wav, greedy[0]))


def test_tiny_decode_dir_layout_and_totals(tiny_dir, tmp_path):
    data = _data_dir(tmp_path, {"u1": _signal(1.5, 1), "u2": _signal(3.0, 2)})
    out = tmp_path / "decode"
    summary = whisper_first_pass(
        tiny_dir, data, out, WhisperFirstPassOptions(beam_size=3, nbest=3, text_form={"punctuation": "keep"})
    )
    assert summary["utterances"] == 2 and summary["audio_s"] == pytest.approx(4.5, abs=0.01)
    info = read_score_info(out)
    assert info["score_kind"] == "per_token" and info["source_model"] == "whisper"
    assert (info["beam_size"], info["nbest"], info["length_penalty"]) == (3, 3, 1.0)
    assert info["text_form"] == {"case": "as_is", "punctuation": "keep", "recipe_case": "as_is"}
    for name in ("text", "text_raw", "score", "num_tokens", "score_whisper_logprob"):
        assert (out / "1best_recog" / name).is_file(), name
    assert json.loads((out / "timing.json").read_text())["audio_s"] == pytest.approx(4.5, abs=0.01)
    per_token = read_espnet_nbest(out, first_pass_score="as_is")
    total = read_espnet_nbest(out)
    for utt in ("u1", "u2"):
        assert len(total[utt]) == len({h.text for h in total[utt]}) >= 1
        for a, b in zip(per_token[utt], total[utt]):
            assert (a.score_kind, b.score_kind) == ("per_token", "total")
            assert b.score == pytest.approx(a.score * a.num_tokens) == pytest.approx(a.scores["whisper_logprob"])
    raw = dict(line.split(" ", 1) for line in (out / "1best_recog" / "text_raw").read_text().splitlines())
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert text == {u: " ".join(r.split()) for u, r in raw.items()}  # punctuation and case kept


def test_hypotheses_take_the_case_of_the_data_dirs_transcripts(tiny_dir, tmp_path):
    """The demo corpus is lower case, ESPnet's corpora upper case: the default text form writes
    the hypotheses in the data dir's own case (upper when it has no transcripts), else every
    word of a correct hypothesis would count as an error."""
    opts = WhisperFirstPassOptions(beam_size=2, nbest=2)

    def decode(name, text):
        data = _data_dir(tmp_path / name, {"u1": _signal(1.5, 1), "u2": _signal(2.0, 2)})
        if text is not None:
            (data / "text").write_text("".join(f"{u} {text}\n" for u in ("u1", "u2")))
        whisper_first_pass(tiny_dir, data, tmp_path / name / "out", opts)
        info = read_score_info(tmp_path / name / "out")
        words = " ".join(h.text for hyps in read_espnet_nbest(tmp_path / name / "out").values() for h in hyps)
        return info["text_form"]["recipe_case"], words

    for text, case in (("the cat sat", "lower"), ("THE CAT SAT", "upper"), (None, "upper")):
        recipe_case, words = decode(f"case_{case}_{text is None}", text)
        assert recipe_case == case
        letters = [c for c in words if c.isalpha()]
        assert letters and all(c.islower() if case == "lower" else c.isupper() for c in letters), words


def test_key_file_selects_one_jobs_share(tiny_dir, tmp_path):
    data = _data_dir(tmp_path, {"u1": _signal(1.0, 1), "u2": _signal(1.0, 2), "u3": _signal(1.0, 3)})
    (tmp_path / "keys").write_text("u3\nu1\n")
    opts = WhisperFirstPassOptions(beam_size=2, nbest=1)
    whisper_first_pass(tiny_dir, data, tmp_path / "out", opts, key_file=tmp_path / "keys")
    assert sorted(read_espnet_nbest(tmp_path / "out")) == ["u1", "u3"]
    (tmp_path / "keys").write_text("u4\n")
    with pytest.raises(ValueError, match=r"keys: utterance 'u4' is not in"):
        whisper_first_pass(tiny_dir, data, tmp_path / "out", opts, key_file=tmp_path / "keys")


def test_a_failed_decode_leaves_the_old_dir(tiny_dir, tmp_path):
    data = _data_dir(tmp_path, {"u1": _signal(1.0, 1), "u2": _signal(1.0, 2)})
    out = tmp_path / "out"
    opts = WhisperFirstPassOptions(beam_size=2, nbest=2)
    whisper_first_pass(tiny_dir, data, out, opts)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "u2.wav").write_bytes(b"not audio")
    with pytest.raises(Exception, match="u2"):
        whisper_first_pass(tiny_dir, data, out, opts)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out", "u1.wav", "u2.wav"]  # no temp dirs left


def test_long_input_is_cut_to_30s_with_a_warning(tiny_dir, tmp_path, caplog):
    data = _data_dir(tmp_path, {"long": _signal(31.0, 4)})
    with caplog.at_level("WARNING"):
        summary = whisper_first_pass(tiny_dir, data, tmp_path / "out", WhisperFirstPassOptions(beam_size=1, nbest=1))
    assert summary["cut_at_30s"] == ["long"] and "utterance 'long' is 31.0 s long" in caplog.text


def test_beams_with_the_same_recipe_text_are_kept_once(tiny_dir, tmp_path, monkeypatch):
    beams = [("The mat.", -0.1), ("the mat", -0.2), ("The map.", -0.3), ("THE MAT!", -0.4)]

    def fake_decode(model, processor, wav, opts):
        return [{"tokens": [i], "raw": r, "score": s, "num_tokens": 3, "ended": True} for i, (r, s) in enumerate(beams)]

    monkeypatch.setattr(wfp, "decode_utterance", fake_decode)
    data = _data_dir(tmp_path, {"u1": _signal(1.0, 1)})
    summary = whisper_first_pass(tiny_dir, data, tmp_path / "out", WhisperFirstPassOptions(beam_size=4, nbest=4))
    hyps = read_espnet_nbest(tmp_path / "out", first_pass_score="as_is")["u1"]
    assert [(h.text, h.score) for h in hyps] == [("THE MAT", -0.1), ("THE MAP", -0.3)]
    assert summary["same_text_dropped"] == 2
    assert (tmp_path / "out" / "2best_recog" / "text_raw").read_text() == "u1 The map.\n"
    opts = WhisperFirstPassOptions(beam_size=4, nbest=4, distinct_text=False)
    whisper_first_pass(tiny_dir, data, tmp_path / "all", opts)
    assert len(read_espnet_nbest(tmp_path / "all")["u1"]) == 4


def test_options_are_checked():
    with pytest.raises(ValueError, match="nbest <= beam_size"):
        WhisperFirstPassOptions(beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="text_form.recipe_case: 'title'"):
        WhisperFirstPassOptions(text_form={"recipe_case": "title"})
    with pytest.raises(ValueError, match="unknown text_form key"):
        WhisperFirstPassOptions(text_form={"casing": "upper"})
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        WhisperFirstPassOptions(max_new_tokens=0)


# ------------------------------------------------------------------------------ Whisper tiny.en

SENTENCES = {"u1": "the cat sat on the mat", "u2": "please call stella and ask her to bring these things"}


@pytest.fixture(scope="module")
def espeak_clips():
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak
    from espnet_llm_plugin.fileio.audio import resample

    out = {}
    for utt, text in SENTENCES.items():
        wav, sr = run_espeak(text, "en-us", 160, 50)
        out[utt] = resample(wav, sr, SAMPLING_RATE)
    return out


@pytest.mark.real_model
@pytest.mark.espeak
def test_real_beams_end_and_are_scored_per_token(whisper_tiny_en, espeak_clips):
    model, processor = whisper_tiny_en
    hyps = decode_utterance(model, processor, espeak_clips["u1"], WhisperFirstPassOptions(beam_size=4, nbest=4))
    assert len(hyps) >= 2 and len({tuple(h["tokens"]) for h in hyps}) == len(hyps)
    assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)
    assert hyps[0]["raw"] == "The cat sat on the mat."
    # the beam score is the per-token log-probability of text + end token, as teacher forcing gives it
    assert hyps[0]["ended"] and hyps[0]["num_tokens"] == len(hyps[0]["tokens"]) + 1
    assert _forced(model, processor, espeak_clips["u1"], hyps[0]) == pytest.approx(hyps[0]["score"], abs=5e-4)


@pytest.mark.real_model
def test_real_speech_nbest_matches_hf_greedy(whisper_tiny_en_dir, whisper_tiny_en, real_speech_dir, tmp_path):
    """Two LJ Speech clips (22.05 kHz WAV): distinct recipe-form beams, best first; the 1-best
    is Hugging Face Whisper's own greedy decode here (clear speech); "EIGHT THE PRESS YARD" is
    in the 4-best though the 1-best writes "8"."""
    from espnet_llm_plugin.fileio.audio import read_audio, resample

    model, processor = whisper_tiny_en
    utts = ("LJ002-0020", "LJ002-0035")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{u} {real_speech_dir / 'audio' / (u + '.wav')}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in utts))
    out = tmp_path / "decode"
    whisper_first_pass(whisper_tiny_en_dir, data, out, WhisperFirstPassOptions(beam_size=4, nbest=4))
    nbest = read_espnet_nbest(out, first_pass_score="as_is")
    raw = dict(line.split(" ", 1) for line in (out / "1best_recog" / "text_raw").read_text().splitlines())
    for utt in utts:
        hyps = nbest[utt]
        assert len(hyps) >= 2 and len({h.text for h in hyps}) == len(hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert all(h.text == h.text.upper() and "." not in h.text and "," not in h.text for h in hyps)
        wav, sr = read_audio(str(real_speech_dir / "audio" / f"{utt}.wav"))
        with torch.no_grad():
            greedy = model.generate(log_mel(processor, resample(wav, sr, SAMPLING_RATE)))
        assert raw[utt] == processor.tokenizer.decode(greedy[0], skip_special_tokens=True).strip()
    assert nbest["LJ002-0020"][0].text == "IN 1813"
    assert "EIGHT THE PRESS YARD" in [h.text for h in nbest["LJ002-0035"]]
