"""ESPnet's beam-search contracts for our scorers and decoders, next to ESPnet's own scorers.

Our ``LlmDecoder``/``LlmXattnDecoder`` (as the ``decoder`` scorer), ``HfLmScorer``,
``KnnLmScorer`` and ``NoRepeatNgramScorer`` run with ESPnet's ``CTCPrefixScorer``, an ESPnet
LM (``SequentialRNNLM``) and, where ``kenlm`` is installed, its ``NgramFullScorer``, through
both ``espnet.nets.beam_search.BeamSearch`` and ``espnet.nets.batch_beam_search.BatchBeamSearch``,
as ESPnet's own ``test_beam_search.py``/``test_batch_beam_search.py`` check its scorers:

* the two searches give the same n-best (beams 1, 4, 16; float32 and float64);
* a scorer with weight 0 changes nothing (ESPnet drops such scorers; so does our
  ``Speech2TextWithScorers.add_scorer``, which adds scorers after ESPnet built the search);
* one searcher decodes utterances in a row without carrying state over;
* LMs (which read no speech) take ``x=None``, as ESPnet's LMs do;
* ``batch_score`` of B hypotheses equals ``score`` of each, through ``init_state`` and
  ``select_state`` with the beam reordered.

Tiny random models (``test_knnlm_decoding.save_lm``) keep the suite to seconds.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))
from test_knnlm_decoding import WORDS, save_lm  # noqa: E402

V, EOS, D = len(WORDS), 3, 32
MEMORY = "the cat sat on the mat\nthe cat sat on the mat\nthe big dog ran home\nthe cat ran to the dog\n"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Every scorer once (module scope: building them is most of the suite's time)."""
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet2.asr.ctc import CTC
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
    from espnet_llm_plugin.asr.llm_xattn_decoder import LlmXattnDecoder
    from espnet_llm_plugin.decoding.no_repeat_ngram import NoRepeatNgramScorer
    from espnet_llm_plugin.retrieval.datastore import FaissDatastore
    from espnet_llm_plugin.retrieval.document_store import iter_windows, text_documents
    from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
    from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer

    root = tmp_path_factory.mktemp("contracts")
    lm = str(save_lm(root / "lm"))
    (root / "memory.txt").write_text(MEMORY)  # a repeated line: exactly tied keys
    enc = KeyEncoder(lm, device="cpu")
    keys, values = enc.encode(iter_windows(text_documents(enc.tokenizer, root / "memory.txt"), 6, 3))
    datastore = FaissDatastore.build(keys, values, enc.identity())
    torch.manual_seed(0)
    llm = LlmDecoder(V, D, llm_path=lm, prompt="the", finetune="frozen").eval()
    xattn = LlmXattnDecoder(
        V,
        D,
        llm_path=lm,
        prompt="the",
        finetune="frozen",
        xattn_every=1,
        num_passages=2,
        passage_max_tokens=8,
        value_encoder_layers=1,
        xattn_heads=4,
    ).eval()
    with torch.no_grad():  # open the gates (zero at init: the base LLM exactly)
        for block in xattn.xattn_blocks:
            block.attn_gate.fill_(0.7)
            block.ffn_gate.fill_(-0.7)
    xattn.set_context("cat sat on mat ||| big red dog")
    hf_lm = HfLmScorer(lm, token_list=WORDS, eos_id=EOS)
    knn_base = HfLmScorer(lm, token_list=WORDS, eos_id=EOS)
    return {
        "llm": llm,
        "xattn": xattn,
        "ctc": CTCPrefixScorer(CTC(odim=V, encoder_output_size=D), EOS),
        "lm": SequentialRNNLM(V, unit=16, nhid=16, nlayers=1).eval(),
        "hf_lm": hf_lm.eval(),
        "knnlm": KnnLmScorer(knn_base, datastore, lam=0.5, k=4, temperature=1.0).eval(),
        "no_repeat": NoRepeatNgramScorer(2, V),
    }


def speech(seed, T=16, dtype=torch.float32):
    """Encoder output ``(T, D)``; long enough for CTC to allow every 5-token hypothesis (with
    fewer frames ESPnet's numpy and batched CTC prefix scorers disagree on impossible ones)."""
    return torch.randn(T, D, generator=torch.Generator().manual_seed(seed)).to(dtype)


def searcher(parts, cls, decoder, extras, beam, dtype=torch.float32):
    """``cls`` with our ``decoder``, ESPnet's CTC and LM, and our ``extras`` (names in ``parts``)."""
    scorers = {"decoder": parts[decoder], "ctc": parts["ctc"], "lm": parts["lm"]}
    weights = {"decoder": 0.7, "ctc": 0.3, "lm": 0.2}
    for extra in extras:
        scorers[extra], weights[extra] = parts[extra], 0.5
    bs = cls(
        scorers=scorers,
        weights=weights,
        beam_size=beam,
        vocab_size=V,
        sos=EOS,
        eos=EOS,
        token_list=WORDS,
        pre_beam_score_key="full",
    )
    cast(parts, dtype)
    return bs.eval()


def cast(parts, dtype):
    """All modules to ``dtype`` (ESPnet's ``beam_search.to(dtype)`` misses the CTC scorer's module)."""
    for part in parts.values():
        if isinstance(part, torch.nn.Module):
            part.to(dtype=dtype)
    parts["ctc"].ctc.to(dtype=dtype)


def run(bs, x):
    with torch.no_grad():
        return bs(x, maxlenratio=-5.0, minlenratio=0.0)


def summary(nbest):
    return [(h.yseq.tolist(), float(h.score), {k: float(v) for k, v in h.scores.items()}) for h in nbest]


def assert_same_nbest(a, b, tol):
    assert [h[0] for h in a] == [h[0] for h in b]
    for (_, sa, pa), (_, sb, pb) in zip(a, b):
        assert sa == pytest.approx(sb, abs=tol, rel=tol)
        assert pa.keys() == pb.keys() and all(pa[k] == pytest.approx(pb[k], abs=tol, rel=tol) for k in pa)


COMBOS = [("llm", ("hf_lm",)), ("llm", ("knnlm",)), ("xattn", ("no_repeat",))]
ALL_OURS = [("llm", ("hf_lm", "knnlm", "no_repeat")), ("xattn", ("hf_lm", "no_repeat"))]
# beams 1 and 4 in float32 and float64 for every combination; 16 (the plain search of 16
# hypotheses is the suite's slowest part) for the kNN-LM, whose tied neighbours it covers
CASES = [(d, e, b, t) for d, e in COMBOS for b, t in ((1, torch.float32), (4, torch.float32), (4, torch.float64))] + [
    ("llm", ("knnlm",), 16, torch.float32)
]


@pytest.mark.parametrize(
    "decoder, extras, beam, dtype", CASES, ids=["-".join([d, *e, str(b), str(t)[6:]]) for d, e, b, t in CASES]
)
def test_batch_and_plain_beam_search_give_the_same_nbest(parts, decoder, extras, beam, dtype):
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch

    x = speech(beam, dtype=dtype)
    try:
        plain = summary(run(searcher(parts, BeamSearch, decoder, extras, beam, dtype), x))
        batch = summary(run(searcher(parts, BatchBeamSearch, decoder, extras, beam, dtype), x))
    finally:
        cast(parts, torch.float32)  # the modules are shared with the next cases
    assert plain and all(torch.isfinite(torch.tensor(h[1])) for h in plain)
    assert_same_nbest(plain, batch, 1e-4)


@pytest.mark.parametrize("extra", ["hf_lm", "knnlm", "no_repeat"])
def test_weight_zero_scorer_changes_nothing(parts, extra):
    """Added after the search was built (as Speech2TextWithScorers does), weight 0 is no-op;
    a kNN-LM at lambda 1 scores -inf off its neighbours' tokens: 0 * -inf would be NaN."""
    from espnet.nets.batch_beam_search import BatchBeamSearch

    from espnet_llm_plugin.decoding.speech2text import Speech2TextWithScorers

    x = speech(1)
    ref = summary(run(searcher(parts, BatchBeamSearch, "llm", (), 4), x))
    bs = searcher(parts, BatchBeamSearch, "llm", (), 4)
    scorer = parts[extra]
    if extra == "knnlm":
        scorer = type(scorer)(scorer.base, scorer.datastore, lam=1.0, k=4, temperature=1.0)
    Speech2TextWithScorers.add_scorer(SimpleNamespace(beam_search=bs), extra, scorer, 0.0)
    assert_same_nbest(summary(run(bs, x)), ref, 0.0)


@pytest.mark.parametrize("decoder, extras", ALL_OURS)
def test_utterances_in_a_row_on_one_searcher(parts, decoder, extras):
    """A searcher reused for the next utterance (as Speech2Text is) carries no state over."""
    from espnet.nets.batch_beam_search import BatchBeamSearch

    bs = searcher(parts, BatchBeamSearch, decoder, extras, 4)
    first = [summary(run(bs, speech(s, T))) for s, T in ((1, 16), (2, 20), (1, 16))]
    assert_same_nbest(first[0], first[2], 0.0)
    fresh = summary(run(searcher(parts, BatchBeamSearch, decoder, extras, 4), speech(2, 20)))
    assert_same_nbest(first[1], fresh, 0.0)


LMS = ["hf_lm", "knnlm", "no_repeat", "lm"]  # "lm": ESPnet's own, for reference


@pytest.mark.parametrize("name", LMS)
def test_lms_take_x_none(parts, name):
    scorer = parts[name]
    ys = torch.tensor([[EOS, 4, 6], [EOS, 5, 7]])
    x = speech(0)
    with torch.no_grad():
        ref, _ = scorer.batch_score(ys, [scorer.init_state(x)] * 2, x.expand(2, -1, -1))
        logp, _ = scorer.batch_score(ys, [scorer.init_state(None)] * 2, None)
        one, _ = scorer.score(ys[1], scorer.init_state(None), None)
    torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one, ref[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["llm", "xattn"] + LMS)
def test_batch_score_equals_score_of_each_through_select_state(parts, name):
    """Four hypotheses grown three steps, the beam reordered each step (ESPnet's select_state):
    batch_score rows equal score per hypothesis."""
    scorer = parts[name]
    x = speech(3)
    n = 4
    g = torch.Generator().manual_seed(0)
    ys = torch.full((n, 1), EOS)
    with torch.no_grad():
        init = scorer.init_state(x)
        batch_states, single_states = [init] * n, [init] * n
        for step in range(3):
            logp, new_batch = scorer.batch_score(ys, batch_states, x.expand(n, -1, -1))
            single = [scorer.score(ys[i], single_states[i], x) for i in range(n)]
            torch.testing.assert_close(logp, torch.stack([s[0] for s in single]), rtol=1e-4, atol=1e-4)
            # the next beam: parents reordered (one twice), one new token each
            parents = [2, 0, 0, 3] if step % 2 == 0 else [1, 3, 2, 0]
            tokens = torch.randint(4, V, (n,), generator=g)
            # BatchBeamSearch picks rows of batch_score's states; BeamSearch keeps score's
            batch_states = [scorer.select_state(new_batch, p) for p in parents]
            single_states = [single[p][1] for p in parents]
            ys = torch.cat([ys[parents], tokens[:, None]], dim=1)


def test_espnet_ngram_next_to_ours(parts, tmp_path):
    """ESPnet's n-gram scorer (kenlm) with ours in both searches, where kenlm is installed."""
    pytest.importorskip("kenlm")
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch
    from espnet.nets.scorers.ngram import NgramFullScorer

    arpa = tmp_path / "lm.arpa"
    words = WORDS[4:]
    lines = ["\\data\\", f"ngram 1={len(words) + 2}", "", "\\1-grams:", "-99\t<s>", "-1.0\t</s>"]
    lines += [f"-1.2\t{w}" for w in words] + ["", "\\end\\", ""]
    arpa.write_text("\n".join(lines))
    ngram = NgramFullScorer(str(arpa), WORDS)
    out = []
    for cls in (BeamSearch, BatchBeamSearch):
        bs = cls(
            scorers={"decoder": parts["llm"], "ngram": ngram, "no_repeat": parts["no_repeat"]},
            weights={"decoder": 1.0, "ngram": 0.3, "no_repeat": 1.0},
            beam_size=4,
            vocab_size=V,
            sos=EOS,
            eos=EOS,
        )
        out.append(summary(run(bs, speech(5))))
    assert_same_nbest(out[0], out[1], 1e-4)
