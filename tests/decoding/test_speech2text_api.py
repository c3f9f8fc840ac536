"""The public Python API: ``from espnet_llm_plugin import Speech2Text`` registers our components in
a fresh process, takes ESPnet's and our decode options as keywords, and decodes a waveform or an
audio file into an n-best of (text, token, token_int, hyp) with ``.score``."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from test_knnlm_decoding import save_asr_model, save_lm

FRESH = """
import sys
import espnet_llm_plugin
assert "torch" not in sys.modules and "espnet2" not in sys.modules, "import espnet_llm_plugin is not cheap"
from espnet_llm_plugin.quiet import quiet_espnet_import
with quiet_espnet_import():
    from espnet2.tasks.asr import decoder_choices
assert "llm" not in decoder_choices.classes  # nothing registered yet
from espnet_llm_plugin import Speech2Text
assert "llm" in decoder_choices.classes, sorted(decoder_choices.classes)
print("OK", Speech2Text.__name__)
"""


def test_fresh_process_import_registers_without_register_call():
    proc = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["OK", "Speech2Text"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from espnet_llm_plugin.bin.build_datastore import main as build

    root = tmp_path_factory.mktemp("s2t_api")
    lm = save_lm(root / "lm")
    (root / "memory.txt").write_text("the cat sat on the mat\nthe big dog ran home\n")
    build(
        [
            "--memory_text",
            str(root / "memory.txt"),
            "--key_encoder",
            str(lm),
            "--window",
            "6",
            "--device",
            "cpu",
            "--out_dir",
            str(root / "ds"),
        ]
    )
    (root / "asr").mkdir()
    config, pth = save_asr_model(root / "asr", lm, "transformer")
    return root, lm, config, pth


def test_espnet_and_our_options_are_constructor_keywords(model, tmp_path):
    import soundfile

    from espnet_llm_plugin import Speech2Text
    from espnet_llm_plugin.decoding.speech2text import ExtraDecodingOptions

    root, lm, config, pth = model
    s2t = Speech2Text(
        asr_train_config=config,
        asr_model_file=pth,
        device="cpu",
        beam_size=3,
        ctc_weight=0.0,
        lm_weight=0.0,
        nbest=2,
        hf_lm_path=str(lm),
        hf_lm_weight=0.2,
        knnlm_datastore=str(root / "ds"),
        knnlm_weight=0.4,
        knnlm_k=4,
    )
    assert s2t.beam_search.beam_size == 3 and s2t.nbest == 2
    assert s2t.beam_search.weights["knnlm"] == pytest.approx(0.4)
    assert s2t.beam_search.weights["hf_lm"] == pytest.approx(0.2)
    assert s2t.extra.knnlm_k == 4 and Speech2Text.extra == ExtraDecodingOptions()  # the class default is untouched

    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    nbest = s2t(wav)
    assert 1 <= len(nbest) <= 2
    text, token, token_int, hyp = nbest[0]  # ESPnet's tuple shape
    assert nbest[0].text == text and nbest[0].score == pytest.approx(float(hyp.score))
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
    assert [h.token_int for h in s2t(torch.from_numpy(wav))] == [h.token_int for h in nbest]

    # an audio file at another rate is read and resampled to the model's 16 kHz
    from espnet_llm_plugin.fileio.audio import resample

    wav8k = wav[::2].copy()
    soundfile.write(tmp_path / "utt.wav", wav8k, 8000, subtype="FLOAT")
    from_file = s2t(str(tmp_path / "utt.wav"))
    assert [h.token_int for h in from_file] == [h.token_int for h in s2t(resample(wav8k, 8000, 16000))]


def test_unknown_and_bad_options_are_refused_before_building(model):
    from espnet_llm_plugin import Speech2Text

    _, _, config, pth = model
    with pytest.raises(TypeError, match="unknown decoding option.*knnlm_wieght"):
        Speech2Text(asr_train_config=config, asr_model_file=pth, knnlm_wieght=0.3)
    with pytest.raises(ValueError, match="knnlm_lambda must be in"):
        Speech2Text(asr_train_config=config, asr_model_file=pth, knnlm_lambda=2.0)


class BanTokenScorer:
    """A decode-time scorer of the kind a user adds: ``-inf`` for one token id."""

    def __init__(self, token: int, n_vocab: int):
        self.token, self.n_vocab = token, n_vocab

    def init_state(self, x):
        return None

    def select_state(self, state, i, new_id=None):
        return state

    def batch_init_state(self, x):
        return None

    def batch_score(self, ys, states, xs):
        scores = torch.zeros(ys.shape[0], self.n_vocab, device=xs.device)
        scores[:, self.token] = float("-inf")
        return scores, states


def build_ban_scorer(ctx, token):
    return BanTokenScorer(int(token), ctx.beam_search.n_vocab)


def test_a_registered_scorer_is_built_by_name_from_the_scorers_option(model, monkeypatch):
    from espnet_llm_plugin import Speech2Text
    from espnet_llm_plugin.core import decode_scorers

    root, lm, config, pth = model
    monkeypatch.setattr(decode_scorers, "DECODE_SCORERS", dict(decode_scorers.DECODE_SCORERS))
    decode_scorers.register_decode_scorer("ban", "test_speech2text_api:build_ban_scorer")
    wav = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    common = dict(
        asr_train_config=config, asr_model_file=pth, device="cpu", beam_size=3, ctc_weight=0.0, lm_weight=0.0, nbest=1
    )
    free = Speech2Text(**common)(wav)[0].token_int
    banned = free[0]
    s2t = Speech2Text(**common, scorers={"ban": {"weight": 1.0, "conf": {"token": banned}}})
    assert s2t.beam_search.weights["ban"] == 1.0
    assert banned not in s2t(wav)[0].token_int
    # the built-in scorers under scorers: the same beam search as their flat keys
    via_table = Speech2Text(**common, scorers={"hf_lm": {"weight": 0.2, "conf": {"path": str(lm)}}})
    flat = Speech2Text(**common, hf_lm_path=str(lm), hf_lm_weight=0.2)
    assert via_table.beam_search.weights["hf_lm"] == flat.beam_search.weights["hf_lm"] == pytest.approx(0.2)
    assert via_table(wav)[0].token_int == flat(wav)[0].token_int
    with pytest.raises(ValueError, match="unknown decode scorer 'bann'"):
        Speech2Text(**common, scorers={"bann": {"weight": 1.0}})
