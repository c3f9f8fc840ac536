"""KeyEncoder: keys are the LM's hidden states at the right positions; identity hashes."""

import numpy as np
import pytest
import torch

from espnet_llm_plugin.retrieval.document_store import Document, sliding_windows, text_documents
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder, tokenizer_hash


def test_keys_equal_hidden_states_of_full_document(tiny_lm):
    enc = KeyEncoder(str(tiny_lm), layer=1, device="cpu", batch_size=2)
    doc = Document("d", (2, 4, 5, 6, 7, 8, 9, 10, 3))
    windows = sliding_windows(doc, window=4, stride=4)
    keys, values = enc.encode(windows)
    assert keys.shape == (8, 32) and list(values) == list(doc.ids[1:])
    # the first window's keys equal a forward of its tokens alone
    with torch.no_grad():
        hs = enc.model(input_ids=torch.tensor([windows[0].input_ids]), output_hidden_states=True).hidden_states[1][0]
    np.testing.assert_allclose(keys[:3], hs[:3].numpy(), rtol=1e-4, atol=1e-5)


def test_batching_does_not_change_keys(tiny_lm, memory_file):
    enc = KeyEncoder(str(tiny_lm), device="cpu", batch_size=1)
    windows = [w for d in text_documents(enc.tokenizer, memory_file) for w in sliding_windows(d, 5, 3)]
    k1, v1 = enc.encode(windows)
    enc.batch_size = 16
    k2, v2 = enc.encode(windows)
    np.testing.assert_allclose(k1, k2, rtol=1e-4, atol=1e-5)
    assert (v1 == v2).all()


def test_identity(tiny_lm, tmp_path, make_lm):
    enc = KeyEncoder(str(tiny_lm), device="cpu")
    ident = enc.identity()
    assert ident["hidden_size"] == 32 and ident["layer"] == -1 and ident["vocab_size"] == len(enc.tokenizer)
    assert ident["tokenizer_hash"] == tokenizer_hash(enc.tokenizer)
    other = KeyEncoder(str(make_lm(tmp_path / "o", extra_tokens=["<x>"])), device="cpu")
    assert other.identity()["tokenizer_hash"] != ident["tokenizer_hash"]
    with pytest.raises(ValueError, match="layer 5"):
        KeyEncoder(str(tiny_lm), layer=5, device="cpu")


def test_log_probs_of_the_values(tiny_lm, memory_file):
    """with_logp: log p(value | window prefix) from the model's own logits, for every key."""
    enc = KeyEncoder(str(tiny_lm), device="cpu", batch_size=3)
    windows = [w for d in text_documents(enc.tokenizer, memory_file) for w in sliding_windows(d, 5, 2)]
    keys, values, logp = enc.encode(windows, with_logp=True)
    k2, v2 = enc.encode(windows)
    np.testing.assert_allclose(keys, k2, rtol=1e-4, atol=1e-5)
    assert (values == v2).all() and logp.shape == values.shape
    ref = []
    with torch.no_grad():
        for w in windows:
            lp = torch.log_softmax(enc.model(input_ids=torch.tensor([w.input_ids])).logits[0].float(), -1)
            ref += [float(lp[p, v]) for p, v in zip(w.key_positions(), w.values())]
    np.testing.assert_allclose(logp, ref, rtol=1e-4, atol=1e-4)


def test_framing_and_text_form_from_llm_usage(tiny_lm, tmp_path):
    import json
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(tiny_lm, d)
    (d / "llm_usage.json").write_text(json.dumps({"text_form": {"case": "lower"}, "framing": {"start": ["</s>"]}}))
    enc = KeyEncoder(str(d), device="cpu")
    assert enc.text_form.case == "lower" and enc.framing.start == ("</s>",) and enc.framing.end == ("<eos>",)
    assert KeyEncoder(str(d), device="cpu", text_form={"case": "upper"}).text_form.case == "upper"
    legacy = KeyEncoder(str(tiny_lm), device="cpu")
    assert legacy.text_form.is_identity and legacy.framing.to_dict() == {"start": ["<bos>"], "end": ["<eos>"]}


@pytest.mark.real_model
def test_smollm2_memory_in_recipe_form_is_read_in_its_text_form(smollm2_key_encoder):
    """ESPnet recipes keep transcripts upper case; SmolLM2 reads them in its text form (its
    llm_usage.json, e.g. sentence case): an upper-case memory gives the keys of the same
    memory in lower case, and not the keys of the upper-case string read as it is."""
    from espnet_llm_plugin.core.text_form import TextForm
    from espnet_llm_plugin.retrieval.document_store import text_ids

    enc = smollm2_key_encoder
    lower = ["doctor okonkwo said the halcyon orbiter reached enceladus", "the probe carries a laser altimeter"]
    upper = [t.upper() for t in lower]

    def keys(texts, form):
        docs = [Document(str(i), text_ids(enc.tokenizer, t, enc.framing, form)) for i, t in enumerate(texts)]
        return enc.encode([w for d in docs for w in sliding_windows(d, 64, 32)])

    assert not enc.text_form.is_identity, "SmolLM2's llm_usage.json has no text form"
    ku, vu = keys(upper, enc.text_form)
    kl, vl = keys(lower, enc.text_form)
    np.testing.assert_array_equal(vu, vl)
    np.testing.assert_allclose(ku, kl, rtol=1e-4, atol=1e-4)
    k_raw, v_raw = keys(upper, TextForm())
    assert len(v_raw) > len(vl)  # upper case splits into more, rarer pieces


def test_identity_fingerprints_the_weights(tiny_lm, tmp_path, make_lm):
    """Same config and tokenizer, other weights: the same config hash but another fingerprint
    (a datastore of one must not be queried with the other); a copy of the files: the same."""
    import shutil

    from espnet_llm_plugin.core.base_weights import base_content_hash

    ident = KeyEncoder(str(tiny_lm), device="cpu").identity()
    assert ident["weights_sha256"] == base_content_hash(tiny_lm)
    other = KeyEncoder(str(make_lm(tmp_path / "seed1", seed=1)), device="cpu").identity()
    assert other["config_hash"] == ident["config_hash"] and other["tokenizer_hash"] == ident["tokenizer_hash"]
    assert other["weights_sha256"] != ident["weights_sha256"]
    shutil.copytree(tiny_lm, tmp_path / "copy")
    assert KeyEncoder(str(tmp_path / "copy"), device="cpu").identity()["weights_sha256"] == ident["weights_sha256"]
