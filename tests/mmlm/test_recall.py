"""Recall@k on hand-made similarity matrices, ties included."""

import pytest
import torch

from espnet_llm_plugin.mmlm.recall import group_by_text, ranks_of_relevant, recall_at_k


def test_recall_on_a_hand_made_matrix():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.2],  # gold 0: rank 0
            [0.5, 0.4, 0.3, 0.6],  # gold 1: docs 3, 0 above -> rank 2
            [0.1, 0.2, 0.3, 0.4],  # gold 2: doc 3 above -> rank 1
        ]
    )
    assert ranks_of_relevant(sim, [0, 1, 2]).tolist() == [0, 2, 1]
    r = recall_at_k(sim, [0, 1, 2], ks=(1, 2, 3, 10))
    assert r["R@1"] == pytest.approx(1 / 3)
    assert r["R@2"] == pytest.approx(2 / 3)
    assert r["R@3"] == 1.0 and r["R@10"] == 1.0
    assert r["mean_rank"] == pytest.approx((1 + 3 + 2) / 3)


def test_ties_rank_the_lower_index_first():
    sim = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    # all tied: document d has rank d, whatever the query
    assert ranks_of_relevant(sim, [0, 1, 2]).tolist() == [0, 1, 2]
    sim = torch.tensor([[0.2, 0.7, 0.7]])
    assert ranks_of_relevant(sim, [2]).tolist() == [1]  # tied with doc 1, which wins
    assert ranks_of_relevant(sim, [1]).tolist() == [0]


def test_several_relevant_documents_count_the_best():
    sim = torch.tensor([[0.1, 0.9, 0.3, 0.8]])
    assert ranks_of_relevant(sim, [[2, 3]]).tolist() == [1]
    assert recall_at_k(sim, [[0, 2]], ks=(1, 2, 3))["R@3"] == 1.0
    assert recall_at_k(sim, [[0, 2]], ks=(1, 2, 3))["R@2"] == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="Nq, Nd"):
        recall_at_k(torch.zeros(3), [0])
    with pytest.raises(ValueError, match="relevant entries"):
        recall_at_k(torch.zeros(2, 2), [0])
    with pytest.raises(ValueError, match="within"):
        recall_at_k(torch.zeros(1, 2), [2])
    with pytest.raises(ValueError, match="positive"):
        recall_at_k(torch.zeros(1, 2), [0], ks=(0,))


def test_group_by_text():
    texts, index, items = group_by_text(["a b", "c", "a b", "d", "c"])
    assert texts == ["a b", "c", "d"]
    assert index == [0, 1, 0, 2, 1]
    assert items == [[0, 2], [1, 4], [3]]
