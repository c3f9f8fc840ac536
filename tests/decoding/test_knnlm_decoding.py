"""Decode-time integration: hf_lm / knnlm options build scorers in Speech2TextWithScorers.

A tiny ESPnet ASR model (our LlmASRTask, random weights) whose token list is the tiny HF LM's
vocabulary is built from a config, saved as ESPnet saves models, and decoded with ESPnet's
``Speech2Text`` machinery.
"""

import numpy as np
import pytest
import torch
import yaml
from tiny_models import save_tiny_llm

from espnet_llm_plugin.decoding.speech2text import ExtraDecodingOptions, speech2text_class

WORDS = ["<pad>", "<unk>", "<s>", "</s>"] + "the a cat dog sat on mat ran to home big red".split()


def save_lm(d, extra_tokens=()):
    return save_tiny_llm(
        d,
        WORDS,
        extra_tokens=extra_tokens,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )


def save_asr_model(d, lm_dir, decoder, tokens=WORDS):
    """A random ESPnet model: ``decoder`` is ``transformer``, ``llm`` or ``llm_xattn`` (LLM = lm_dir)."""
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    (d / "tokens.txt").write_text("\n".join(tokens) + "\n")
    argv = [
        "--token_list",
        str(d / "tokens.txt"),
        "--output_dir",
        str(d),
        "--token_type",
        "hugging_face",
        "--bpemodel",
        str(lm_dir),
        "--model_conf",
        "sym_sos=</s>",
        "--model_conf",
        "sym_eos=</s>",
        "--model_conf",
        "ctc_weight=0.0",
        "--frontend_conf",
        "n_mels=20",
        "--encoder",
        "transformer",
        "--encoder_conf",
        "output_size=16",
        "--encoder_conf",
        "linear_units=16",
        "--encoder_conf",
        "num_blocks=1",
        "--encoder_conf",
        "attention_heads=2",
    ]
    if decoder in ("llm", "llm_xattn"):
        argv += [
            "--postencoder",
            "conv1d_mlp_adapter",
            "--postencoder_conf",
            "output_size=32",
            "--decoder",
            decoder,
            "--decoder_conf",
            f"llm_path={lm_dir}",
            "--decoder_conf",
            "finetune=frozen",
        ]
        if decoder == "llm_xattn":
            argv += ["--decoder_conf", "value_encoder_layers=1", "--decoder_conf", "passage_max_tokens=8"]
    else:
        argv += [
            "--decoder",
            "transformer",
            "--decoder_conf",
            "num_blocks=1",
            "--decoder_conf",
            "linear_units=16",
            "--decoder_conf",
            "attention_heads=2",
        ]
    args = LlmASRTask.get_parser().parse_args(argv)
    model = LlmASRTask.build_model(args)
    torch.save(model.state_dict(), d / "model.pth")  # ESPnet's checkpoint format
    with open(d / "config.yaml", "w") as f:
        yaml.safe_dump(
            yaml.safe_load(yaml.safe_dump({k: v for k, v in vars(args).items()}, default_flow_style=False)), f
        )
    return d / "config.yaml", d / "model.pth"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from espnet_llm_plugin.bin.build_datastore import main as build

    root = tmp_path_factory.mktemp("knn_decode")
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
    return root, lm, save_asr_model(root / "asr", lm, "transformer")


def decode(model, extra, **kw):
    cls = speech2text_class(extra)
    opts = dict(device="cpu", beam_size=2, ctc_weight=0.0, lm_weight=0.0, maxlenratio=0.0, minlenratio=0.0, nbest=1)
    opts.update(kw)
    s2t = cls(asr_train_config=str(model[0]), asr_model_file=str(model[1]), **opts)
    speech = torch.tensor(np.random.default_rng(0).standard_normal(8000), dtype=torch.float32)
    return s2t, s2t(speech)


def test_knnlm_and_hf_lm_scorers_decode(setup):
    root, lm, model = setup
    extra = ExtraDecodingOptions(
        knnlm_datastore=str(root / "ds"), knnlm_lambda=0.5, knnlm_k=4, hf_lm_path=str(lm), hf_lm_weight=0.2
    )
    s2t, results = decode(model, extra)
    bs = s2t.beam_search
    assert type(bs).__name__ == "BatchBeamSearch"
    assert bs.weights["knnlm"] == pytest.approx(0.3) and bs.weights["hf_lm"] == pytest.approx(0.2)
    assert len(results) == 1 and isinstance(results[0][0], str)


def test_torch_backend_decodes_like_faiss(setup):
    root, lm, model = setup
    out = []
    for backend in ("faiss", "torch"):
        extra = ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_backend=backend, knnlm_weight=1.0)
        out.append(decode(model, extra)[1][0][2])  # token ids of the best hypothesis
    assert out[0] == out[1]


def test_other_tokenizer_refused(setup, tmp_path):
    from espnet_llm_plugin.retrieval.datastore import DatastoreError
    from espnet_llm_plugin.retrieval.hf_lm_scorer import TokenListMismatch

    root, lm, model = setup
    # an ASR model whose token list orders two words differently from the LM's vocabulary
    swapped = list(WORDS)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    (tmp_path / "asr").mkdir()
    other_model = save_asr_model(tmp_path / "asr", lm, "transformer", tokens=swapped)
    with pytest.raises(TokenListMismatch, match="not the vocabulary"):
        decode(other_model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds")))
    # an LM extending the ASR vocabulary (as a speech+text LM does) may score, but this
    # datastore's keys come from another model
    other = save_lm(tmp_path / "other", extra_tokens=["<x>"])
    with pytest.raises(DatastoreError, match="built with another model"):
        decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_lm_path=str(other)))
    with pytest.raises(DatastoreError, match="not found"):
        decode(model, ExtraDecodingOptions(knnlm_datastore=str(tmp_path / "none")))


def test_decoder_query_mode_with_llm_decoder(setup, tmp_path):
    from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer

    root, lm, _ = setup
    (tmp_path / "asr").mkdir()
    model = save_asr_model(tmp_path / "asr", lm, "llm")
    base = decode(model, ExtraDecodingOptions())[1][0][2]
    extra = ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_query="decoder", knnlm_lambda=0.0)
    s2t, res = decode(model, extra)
    assert isinstance(s2t.beam_search.full_scorers["decoder"], KnnLmScorer)
    assert res[0][2] == base  # lambda 0: the decoder's own scores
    extra = ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_query="decoder", knnlm_lambda=0.5)
    decode(model, extra)


def test_option_validation():
    with pytest.raises(ValueError, match="knnlm_lambda"):
        ExtraDecodingOptions(knnlm_lambda=2.0)
    with pytest.raises(ValueError, match="knnlm_query"):
        ExtraDecodingOptions(knnlm_query="x")
    with pytest.raises(ValueError, match="knnlm_k must be of type int"):
        ExtraDecodingOptions(knnlm_k="8")
    assert ExtraDecodingOptions(knnlm_weight=1).knnlm_weight == 1.0
    assert ExtraDecodingOptions.parse_value("knnlm_temperature", "2.5") == 2.5


def test_options_from_decode_yaml_and_command_line(tmp_path):
    from espnet_llm_plugin.bin.asr_inference import split_extra_options

    cfg = tmp_path / "decode.yaml"
    cfg.write_text("beam_size: 4\nknnlm_datastore: exp/ds\nknnlm_lambda: 0.3\nknnlm_k: 8\n")
    cmd, extra = split_extra_options(
        [
            "--config",
            str(cfg),
            "--knnlm_temperature",
            "2",
            "--hf_lm_path=lm",
            "--hf_lm_weight",
            "0.1",
            "--knnlm_backend",
            "torch",
        ],
        tmp_path,
    )
    assert (extra.knnlm_datastore, extra.knnlm_lambda, extra.knnlm_k) == ("exp/ds", 0.3, 8)
    assert (extra.knnlm_temperature, extra.hf_lm_path, extra.hf_lm_weight, extra.knnlm_backend) == (
        2.0,
        "lm",
        0.1,
        "torch",
    )
    assert yaml.safe_load(open(cmd[1])) == {"beam_size": 4} and len(cmd) == 2
    with pytest.raises(ValueError, match="--knnlm_k must be of type int"):
        split_extra_options(["--knnlm_k", "many"], tmp_path)


def test_search_params_reach_the_faiss_index(setup, monkeypatch):
    from espnet_llm_plugin.retrieval.datastore import FaissSearch

    root, lm, model = setup
    seen = []
    original = FaissSearch.set_search_params
    monkeypatch.setattr(FaissSearch, "set_search_params", lambda self, p: (seen.append(p), original(self, p)))
    decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds")))
    assert seen == [None]  # none given: faiss' defaults
    # the demo datastore is Flat: it has no nprobe, and says so naming the index
    with pytest.raises(ValueError, match="does not take search parameters 'nprobe=8'"):
        decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_search_params="nprobe=8"))
    assert seen[-1] == "nprobe=8"


def test_unset_knnlm_options_take_the_key_encoders_settings(setup, tmp_path):
    """Decode configs leave lambda/k/temperature out: the settings of the datastore's key encoder
    apply (library defaults, then its llm_usage.json), and explicit options still win."""
    import json
    import shutil

    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    root, lm, model = setup
    extra = ExtraDecodingOptions(knnlm_datastore=str(root / "ds"))
    assert (extra.knnlm_lambda, extra.knnlm_k, extra.knnlm_temperature) == (None, None, None)
    s2t, _ = decode(model, extra)
    assert (s2t.knnlm.lam, s2t.knnlm.k, s2t.knnlm.temperature) == (DEFAULTS.lam, DEFAULTS.k, DEFAULTS.temperature)
    s2t, _ = decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_lambda=0.1, knnlm_k=3))
    assert (s2t.knnlm.lam, s2t.knnlm.k) == (0.1, 3)
    # a key encoder with its own measured settings (llm_usage.json "knnlm")
    from espnet_llm_plugin.bin.build_datastore import main as build

    lm2 = tmp_path / "lm_with_usage"
    shutil.copytree(lm, lm2)
    (lm2 / "llm_usage.json").write_text(json.dumps({"knnlm": {"lambda": 0.2, "k": 5}}))
    build(
        [
            "--memory_text",
            str(root / "memory.txt"),
            "--key_encoder",
            str(lm2),
            "--window",
            "6",
            "--device",
            "cpu",
            "--out_dir",
            str(tmp_path / "ds2"),
        ]
    )
    s2t, _ = decode(model, ExtraDecodingOptions(knnlm_datastore=str(tmp_path / "ds2")))
    assert (s2t.knnlm.lam, s2t.knnlm.k, s2t.knnlm.temperature) == (0.2, 5, DEFAULTS.temperature)


def test_datastore_without_recorded_framing_is_queried_as_it_was_built(setup, tmp_path):
    """Datastores written before framings were recorded hold [bos] text [eos] keys: their
    queries keep that frame even when the key encoder has since gained an llm_usage.json."""
    import json
    import shutil

    root, lm, model = setup
    ds = tmp_path / "old_ds"
    shutil.copytree(root / "ds", ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["info"]["build"]["framing"]  # what new datastores record
    del manifest["info"]["build"]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    lm2 = tmp_path / "lm_with_usage"
    shutil.copytree(lm, lm2)
    (lm2 / "llm_usage.json").write_text(json.dumps({"framing": {"start": ["<eos>"], "end": ["<eos>"]}}))
    s2t, _ = decode(model, ExtraDecodingOptions(knnlm_datastore=str(ds), knnlm_lm_path=str(lm2)))
    assert s2t.knnlm.base.framing.start == ("<bos>",) and s2t.knnlm.base.framing.end == ("<eos>",)


def test_zero_knnlm_weight_decodes_as_without_knnlm(setup):
    """knnlm_weight 0 with lambda 1 (p_knn is -inf off the retrieved tokens): the scorer is left
    out, as ESPnet leaves out its own zero-weight scorers; before, 0 * -inf made scores NaN."""
    root, lm, model = setup
    _, base = decode(model, ExtraDecodingOptions())
    s2t, res = decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_lambda=1.0, knnlm_weight=0.0))
    assert torch.isfinite(torch.as_tensor(res[0][3].score)) and float(res[0][3].score) == float(base[0][3].score)
    assert res[0][2] == base[0][2]
    assert "knnlm" not in s2t.beam_search.full_scorers


def test_datastore_of_another_checkpoint_of_the_same_config_is_refused(setup, tmp_path, caplog):
    """Same config and tokenizer, other weights: refused, naming both fingerprints and the dir;
    a datastore without a recorded fingerprint (built before) loads with a warning."""
    import json
    import shutil

    from espnet_llm_plugin.retrieval.datastore import DatastoreError
    from espnet_llm_plugin.retrieval.key_encoder import weights_fingerprint

    root, lm, model = setup
    other = save_lm(tmp_path / "other")
    with torch.no_grad():  # another checkpoint of the same model: same config, other weights
        from transformers import LlamaForCausalLM

        m = LlamaForCausalLM.from_pretrained(other)
        for p in m.parameters():
            p.add_(0.01)
        m.save_pretrained(other)
    with pytest.raises(DatastoreError) as e:
        decode(model, ExtraDecodingOptions(knnlm_datastore=str(root / "ds"), knnlm_lm_path=str(other)))
    msg = str(e.value)
    assert weights_fingerprint(str(lm)) in msg and weights_fingerprint(str(other)) in msg
    assert str(root / "ds") in msg
    # an old datastore: no fingerprint in its manifest
    shutil.copytree(root / "ds", tmp_path / "old_ds")
    manifest = json.loads((tmp_path / "old_ds" / "manifest.json").read_text())
    del manifest["key_encoder"]["weights_sha256"]
    (tmp_path / "old_ds" / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        decode(model, ExtraDecodingOptions(knnlm_datastore=str(tmp_path / "old_ds"), knnlm_lm_path=str(other)))
    assert "no key-encoder weights fingerprint" in caplog.text
