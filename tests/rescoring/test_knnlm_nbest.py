"""KnnLmNbestScorer: hypotheses scored by the kNN-LM of a text-only memory (tiny LM, and
SmolLM2 over demo target-domain sentences)."""

import json

import pytest
from rescoring_tiny_lm import MEMORY, build_knnlm_memory, build_tiny_lm_dirs

from espnet_llm_plugin.rescoring.knnlm_nbest import KnnLmNbestScorer, knnlm_identity, tuned_lambda
from espnet_llm_plugin.rescoring.nbest import Hypothesis


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    root = tmp_path_factory.mktemp("knnlm_nbest")
    lm = build_tiny_lm_dirs(root)["text"]
    return lm, build_knnlm_memory(lm, root / "datastore")


def test_memory_sentence_gains_most(memory):
    _, ds = memory
    scorer = KnnLmNbestScorer.from_datastore(ds, {"lambda": 0.5, "k": 8}, device="cpu")
    nbest = {"u": [Hypothesis("the cat sat on mat", -1.0), Hypothesis(MEMORY[0], -1.2)], "v": [Hypothesis("dog", -3)]}
    out = scorer.score_nbest(nbest)
    gain = [h.scores["lm"] - h.scores["lm_base"] for h in out["u"]]
    assert gain[1] > gain[0]  # the memory holds the second hypothesis word for word
    assert out["u"][0].score == -1.0 and "lm" not in nbest["u"][0].scores  # the input is left as it was
    assert set(out) == {"u", "v"} and out["v"][0].scores["lm"] < 0


def test_lambda_zero_is_the_key_encoders_score(memory):
    _, ds = memory
    scorer = KnnLmNbestScorer.from_datastore(ds, {"lambda": 0.0}, device="cpu")
    out = scorer.score_nbest({"u": [Hypothesis(MEMORY[1], 0.0), Hypothesis("a cat", 0.0)]})
    assert all(h.scores["lm"] == h.scores["lm_base"] for h in out["u"])


def test_one_pass_scores_every_lambda(memory):
    _, ds = memory
    scorer = KnnLmNbestScorer.from_datastore(ds, {"k": 8}, device="cpu")
    nbest = {"u": [Hypothesis(MEMORY[0], -1.0), Hypothesis("the dog sat", -2.0)]}
    low, high = scorer.score_nbest_lambdas(nbest, [0.2, 0.8])
    alone = KnnLmNbestScorer.from_datastore(ds, {"k": 8, "lambda": 0.8}, device="cpu").score_nbest(nbest)
    assert [h.scores["lm"] for h in high["u"]] == pytest.approx([h.scores["lm"] for h in alone["u"]], abs=1e-6)
    assert [h.scores["lm"] for h in low["u"]] != [h.scores["lm"] for h in high["u"]]


def test_tuned_lambda_is_read_from_the_weights(tmp_path):
    assert tuned_lambda(tmp_path / "none.yaml") is None
    (tmp_path / "plain.yaml").write_text("lm_weight: 0.5\n")
    (tmp_path / "knn.yaml").write_text("lm_weight: 0.5\nknnlm:\n  lambda: 0.25\n  k: 8\n")
    (tmp_path / "bad.yaml").write_text("knnlm: [")
    assert tuned_lambda(tmp_path / "plain.yaml") is None and tuned_lambda(tmp_path / "bad.yaml") is None
    assert tuned_lambda(tmp_path / "knn.yaml") == 0.25


def test_settings_resolve_and_identity_records_them(memory):
    _, ds = memory
    ident = knnlm_identity(ds, {"k": 4, "lambda": None})
    assert ident["datastore"] == str(ds) and ident["k"] == 4 and ident["lambda"] == 0.5
    assert ident["count"] > 0 and "window" not in ident
    scorer = KnnLmNbestScorer.from_datastore(ds, {"temperature": 2.0, "temperature_unit": "absolute"}, device="cpu")
    assert scorer.temperature == 2.0
    relative = KnnLmNbestScorer.from_datastore(ds, {"temperature": 2.0}, device="cpu")
    assert relative.temperature == pytest.approx(2.0 * relative.datastore.distance_scale)


def test_multimodal_memory_and_missing_key_encoder_are_refused(memory, tmp_path):
    _, ds = memory
    for name, edit, match in [
        ("mm", lambda m: m["info"]["build"].update(memory_units="units.txt"), "multi-modal"),
        ("gone", lambda m: m["key_encoder"].update(model_path=str(tmp_path / "nowhere")), "not a directory"),
    ]:
        copy = tmp_path / name
        copy.mkdir()
        for f in ds.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        manifest = json.loads((copy / "manifest.json").read_text())
        edit(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match=match):
            KnnLmNbestScorer.from_datastore(copy, device="cpu")


@pytest.mark.real_model
def test_smollm2_memory_wins_back_a_domain_name(smollm2_dir, tmp_path):
    """SmolLM2 alone barely separates a target-domain sentence from the same sentence with its
    name misheard; with the memory holding the sentence, the kNN-LM prefers it clearly."""
    from espnet_llm_plugin.corpus.sentence_grammar import generate_target_corpus
    from espnet_llm_plugin.retrieval.datastore import FaissDatastore
    from espnet_llm_plugin.retrieval.document_store import Document, iter_scaled_windows, text_ids
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    enc = KeyEncoder(str(smollm2_dir), device="cpu", batch_size=16)
    memory = generate_target_corpus(40, seed=0)
    docs = [Document(str(i), text_ids(enc.tokenizer, t, enc.framing, enc.text_form)) for i, t in enumerate(memory)]
    keys, values = enc.encode(iter_scaled_windows(docs, DEFAULTS.window, DEFAULTS.stride))
    info = {"build": {"framing": enc.framing.to_dict(), "text_form": enc.text_form.to_dict()}}
    FaissDatastore.build(keys, values, enc.identity()).save(tmp_path / "ds", extra=info)
    scorer = KnnLmNbestScorer.from_datastore(tmp_path / "ds", device="cpu")
    right = memory[0]
    words = right.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    wrong = " ".join(w if i != longest else w[: len(w) // 2] + " " + w[len(w) // 2 :] for i, w in enumerate(words))
    out = scorer.score_nbest({"u": [Hypothesis(wrong, 0.0), Hypothesis(right, 0.0)]})["u"]
    base_margin = out[1].scores["lm_base"] - out[0].scores["lm_base"]
    knn_margin = out[1].scores["lm"] - out[0].scores["lm"]
    assert knn_margin > base_margin + 2.0, (right, wrong, base_margin, knn_margin)
