"""NoRepeatNgramScorer: banned tokens, batch = per-hypothesis, and inside ESPnet's beam search."""

import pytest
import torch

from espnet_llm_plugin.decoding.no_repeat_ngram import NoRepeatNgramScorer


@pytest.mark.parametrize(
    "n,tokens,banned",
    [
        (2, [5, 6, 5], [6]),  # "5 6" seen: after 5, 6 is banned
        (2, [5, 6, 7], []),
        (3, [1, 2, 3, 1, 2], [3]),
        (3, [1, 2, 3, 2, 1], []),
        (2, [4, 4], [4]),
        (1, [3, 9, 3], [3, 9]),
        (3, [1], []),
    ],
)
def test_banned_tokens(n, tokens, banned):
    assert NoRepeatNgramScorer(n, 10).banned_tokens(tokens) == banned


def test_batch_score_equals_score_and_skips_sos():
    s = NoRepeatNgramScorer(2, 10)
    ys = torch.tensor([[9, 5, 6, 5], [9, 9, 5, 9]])  # 9 = <sos> at position 0
    x = torch.zeros(2, 3, 4)
    batch, states = s.batch_score(ys, [None, None], x)
    assert states == [None, None]
    for b in range(2):
        single, _ = s.score(ys[b], None, x[b])
        assert torch.equal(single, batch[b])
    assert torch.isinf(batch[0, 6]) and batch[0].isinf().sum() == 1
    assert torch.isinf(batch[1, 5]) and batch[1].isinf().sum() == 1  # sos is not text


def test_in_espnet_batch_beam_search_no_hypothesis_repeats_a_bigram():
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorer_interface import BatchScorerInterface

    V, eos = 6, 5

    class Looping(BatchScorerInterface):
        """Prefers token 1 then 2 forever: "1 2 1 2 1 2 ..."; eos only late."""

        def batch_score(self, ys, states, xs):
            scores = torch.full((ys.size(0), V), -5.0)
            last = ys[:, -1]
            scores[:, 1] = torch.where(last == 1, -3.0, -0.1)
            scores[:, 2] = torch.where(last == 1, -0.1, -3.0)
            scores[:, eos] = -1.0 if ys.size(1) > 6 else -20.0
            return scores.log_softmax(-1), [None] * ys.size(0)

    def search(extra):
        scorers = {"decoder": Looping(), **extra}
        weights = {k: 1.0 for k in scorers}
        bs = BatchBeamSearch(scorers, weights, beam_size=3, vocab_size=V, sos=eos, eos=eos, pre_beam_score_key="full")
        return bs(torch.zeros(4, 2), maxlenratio=0.0, minlenratio=0.0)[0].yseq.tolist()[1:-1]

    looping = search({})
    assert looping[:4] == [1, 2, 1, 2]
    fixed = search({"no_repeat_ngram": NoRepeatNgramScorer(2, V)})
    bigrams = list(zip(fixed, fixed[1:]))
    assert len(bigrams) == len(set(bigrams)), fixed


def test_bad_size():
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        NoRepeatNgramScorer(0, 10)


def test_x_none_as_for_espnet_lms():
    """The scorer reads no speech: ESPnet's LM interface lets callers pass x=None."""
    s = NoRepeatNgramScorer(2, 10)
    ys = torch.tensor([[9, 5, 6, 5], [9, 9, 5, 9]])
    batch, _ = s.batch_score(ys, [None, None], None)
    assert torch.isinf(batch[0, 6]) and batch.device == ys.device
    single, _ = s.score(ys[0], None, None)
    assert torch.equal(single, batch[0])
