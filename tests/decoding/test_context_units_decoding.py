"""Per-utterance data entries through asr_inference's real main: ``context`` (llm_xattn),
``units`` (multi-modal kNN-LM queries), and ``decoding_method: hf_generate``."""

import numpy as np
import pytest
import torch
from test_knnlm_decoding import WORDS, decode, save_asr_model, save_lm

from espnet_llm_plugin.decoding.speech2text import ExtraDecodingOptions

NUM_UNITS = 6


def save_unit_lm(base_dir, d, num_units=NUM_UNITS):
    """A speech+text LM: the text LM with ``<speech>``, ``</speech>``, ``<unit_i>`` added."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.add_special_tokens({"additional_special_tokens": unit_token_list(num_units)})
    model = LlamaForCausalLM.from_pretrained(base_dir)
    model.resize_token_embeddings(len(tok))
    tok.save_pretrained(d)
    model.save_pretrained(d)
    return d, tok.convert_ids_to_tokens(list(range(len(tok))))


def write_speech(d, utts):
    import soundfile as sf

    rng = np.random.default_rng(0)
    lines = []
    for utt in utts:
        path = d / f"{utt}.wav"
        sf.write(path, rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
        lines.append(f"{utt} {path}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    return d / "wav.scp"


def run_main(model, wav_scp, out, entries=(), options=()):
    from espnet_llm_plugin.bin.asr_inference import main

    argv = [
        "--asr_train_config",
        str(model[0]),
        "--asr_model_file",
        str(model[1]),
        "--output_dir",
        str(out),
        "--beam_size",
        "2",
        "--ctc_weight",
        "0",
        "--lm_weight",
        "0",
        "--nbest",
        "1",
        "--data_path_and_name_and_type",
        f"{wav_scp},speech,sound",
    ]
    for path, name, kind in entries:
        argv += ["--data_path_and_name_and_type", f"{path},{name},{kind}"]
    main(argv + list(options))
    lines = (out / "1best_recog" / "token_int").read_text().splitlines()
    return {line.split()[0]: [int(t) for t in line.split()[1:]] for line in lines}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctx_units")
    save_lm(root / "lm")
    write_speech(root, ["u1", "u2"])
    return root


def test_context_reaches_xattn_decoder_through_main(root, monkeypatch):
    from espnet_llm_plugin.asr.llm_xattn_decoder import LlmXattnDecoder

    (root / "xattn").mkdir()
    model = save_asr_model(root / "xattn", root / "lm", "llm_xattn")
    (root / "context_ids").write_text("u1 4 5 3 6\nu2 7\n")
    seen = []
    original = LlmXattnDecoder.set_context

    def record(self, context):
        seen.append(None if context is None else [int(t) for t in torch.as_tensor(context).reshape(-1)])
        return original(self, context)

    monkeypatch.setattr(LlmXattnDecoder, "set_context", record)
    hyps = run_main(model, root / "wav.scp", root / "out_ctx", [(root / "context_ids", "context", "text_int")])
    assert set(hyps) == {"u1", "u2"}
    assert seen == [[4, 5, 3, 6], [7]]  # one context per utterance, in data order


def test_context_for_a_model_without_xattn_is_an_error(root):
    (root / "ctx_bad").write_text("u1 4\nu2 5\n")
    with pytest.raises(SystemExit, match="does not read context"):
        model = save_asr_model(_mkdir(root / "plain"), root / "lm", "transformer")
        run_main(model, root / "wav.scp", root / "out_bad", [(root / "ctx_bad", "context", "text_int")])


def _mkdir(d):
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="module")
def multimodal(root):
    """A unit LM, an ESPnet model over its vocabulary, a multi-modal datastore and a units file."""
    from espnet_llm_plugin.bin.build_datastore import main as build

    lm, vocab = save_unit_lm(root / "lm", root / "unit_lm")
    (root / "mem_units").write_text("m1 0 1 2 3\nm2 4 5 5 1\n")
    (root / "mem_text").write_text("m1 the cat sat on the mat\nm2 the big dog ran home\n")
    build(
        [
            "--memory_units",
            str(root / "mem_units"),
            "--memory_text_file",
            str(root / "mem_text"),
            "--key_encoder",
            str(lm),
            "--window",
            "6",
            "--device",
            "cpu",
            "--out_dir",
            str(root / "mm_ds"),
        ]
    )
    model = save_asr_model(_mkdir(root / "asr_units"), lm, "transformer", tokens=vocab)
    (root / "units").write_text("u1 0 1 2\nu2 4 5\n")
    return lm, model, root / "mm_ds", root / "units"


def test_units_entry_feeds_multimodal_knnlm(root, multimodal, monkeypatch):
    from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer, speech_prefix_ids

    lm, model, ds, units = multimodal
    prefixes = []
    original = KnnLmScorer.set_query_context

    def record(self, u):
        original(self, u)
        prefixes.append(self.base.prefix_ids)

    monkeypatch.setattr(KnnLmScorer, "set_query_context", record)
    opts = ["--knnlm_datastore", str(ds), "--knnlm_units_from_data", "true", "--knnlm_lambda", "0.5"]
    hyps = run_main(model, root / "wav.scp", root / "out_mm", [(units, "units", "text_int")], opts)
    assert set(hyps) == {"u1", "u2"}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm)
    assert prefixes == [tuple(speech_prefix_ids(tok, [0, 1, 2])), tuple(speech_prefix_ids(tok, [4, 5]))]


def test_multimodal_datastore_without_units_is_an_error(root, multimodal):
    lm, model, ds, units = multimodal
    with pytest.raises(SystemExit, match="knnlm_units_from_data"):
        run_main(model, root / "wav.scp", root / "out_mm_none", (), ["--knnlm_datastore", str(ds)])
    # the option set, but no units entry
    with pytest.raises(SystemExit, match="knnlm_units_from_data.*units,text_int"):
        run_main(
            model,
            root / "wav.scp",
            root / "out_mm_none2",
            (),
            ["--knnlm_datastore", str(ds), "--knnlm_units_from_data", "true"],
        )
    # units for a model with no multi-modal kNN-LM
    with pytest.raises(SystemExit, match="no multi-modal kNN-LM"):
        run_main(model, root / "wav.scp", root / "out_mm_none3", [(units, "units", "text_int")])


def test_hf_generate_on_llm_asr(root):
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder

    model = save_asr_model(_mkdir(root / "llm"), root / "lm", "llm")
    s2t, res = decode(model, ExtraDecodingOptions(decoding_method="hf_generate", no_repeat_ngram_size=2))
    text, token, token_int, hyp = res[0]
    assert len(res) == 1 and isinstance(text, str) and token == [WORDS[i] for i in token_int]
    # the same tokens as LlmDecoder.generate, the score its log-prob of tokens + eos
    speech = torch.tensor(np.random.default_rng(0).standard_normal(8000), dtype=torch.float32)
    with torch.no_grad():
        enc, _ = s2t.asr_model.encode(speech[None], torch.tensor([speech.numel()]))
    decoder: LlmDecoder = s2t.asr_model.decoder
    generated = decoder.generate(enc[0], max_new_tokens=enc.size(1), num_beams=2, no_repeat_ngram_size=2)
    assert token_int == [t for t in generated if t != 0]  # as ESPnet, id 0 (blank) is dropped
    ys = hyp.yseq
    assert ys[1:-1].tolist() == generated and int(ys[-1]) == s2t.asr_model.eos
    # the log-prob of the tokens, + p(eos) when generate stopped on eos (not at the limit)
    n = len(ys) - 1 if len(generated) < enc.size(1) else len(ys) - 2
    logits, _ = decoder(enc, torch.tensor([enc.size(1)]), ys[None, :n], torch.tensor([n]))
    ref = torch.log_softmax(logits[0], -1).gather(1, ys[1 : n + 1, None]).sum()
    assert float(hyp.score) == pytest.approx(float(ref), abs=1e-4)
    # through main: the n-best writer takes the result
    hyps = run_main(model, root / "wav.scp", root / "out_gen", (), ["--decoding_method", "hf_generate"])
    assert set(hyps) == {"u1", "u2"}


def test_hf_generate_needs_an_llm_decoder(root):
    model = save_asr_model(_mkdir(root / "plain2"), root / "lm", "transformer")
    with pytest.raises(ValueError, match="hf_generate needs an LLM-ASR model"):
        decode(model, ExtraDecodingOptions(decoding_method="hf_generate"))
    with pytest.raises(ValueError, match="decoding_method"):
        ExtraDecodingOptions(decoding_method="greedy")


@pytest.mark.parametrize("generated, ended", [([5, 6], False), ([5], True)])
def test_hf_generate_scores_eos_only_when_generated(root, monkeypatch, generated, ended):
    """maxlenratio -2: at most 2 new tokens. Two tokens = the limit, no eos was generated: the
    score is the tokens' log-prob alone (ESPnet's beam search appends eos at its limit without
    scoring it); one token = generate stopped on eos: its log-prob is in the score."""
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder

    model = save_asr_model(_mkdir(root / "llm_eos"), root / "lm", "llm")
    monkeypatch.setattr(LlmDecoder, "generate", lambda self, hs, **kw: list(generated))
    s2t, res = decode(model, ExtraDecodingOptions(decoding_method="hf_generate"), maxlenratio=-2.0)
    hyp = res[0][3]
    eos = s2t.asr_model.eos
    assert hyp.yseq.tolist() == [s2t.asr_model.sos] + generated + [eos]
    speech = torch.tensor(np.random.default_rng(0).standard_normal(8000), dtype=torch.float32)
    with torch.no_grad():
        enc, _ = s2t.asr_model.encode(speech[None], torch.tensor([speech.numel()]))
        ys = hyp.yseq
        logits, _ = s2t.asr_model.decoder(enc, torch.tensor([enc.size(1)]), ys[None, :-1], torch.tensor([len(ys) - 1]))
    logp = torch.log_softmax(logits[0], -1).gather(1, ys[1:, None])[:, 0]
    ref = logp.sum() if ended else logp[:-1].sum()
    assert float(hyp.score) == pytest.approx(float(ref), abs=1e-4)
