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
