"""Conv1dMlpAdapter: shapes, lengths, bad sizes."""

import pytest
import torch

from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter


@pytest.mark.parametrize("layers,stride,kernel", [(0, 2, 3), (1, 2, 3), (2, 2, 3), (2, 3, 5)])
def test_output_shape_and_lengths_match_conv_arithmetic(layers, stride, kernel):
    torch.manual_seed(0)
    ad = Conv1dMlpAdapter(input_size=16, output_size=24, num_conv_layers=layers, stride=stride, kernel_size=kernel)
    x = torch.randn(3, 50, 16)
    lens = torch.tensor([50, 37, 20])
    y, ylens = ad(x, lens)
    assert y.shape[0] == 3 and y.shape[2] == 24 and ad.output_size() == 24
    t = 50
    for _ in range(layers):
        t = (t - kernel) // stride + 1
    assert y.shape[1] == t and int(ylens[0]) == t
    assert (ylens[1:] < ylens[0]).all()


def test_padding_frames_do_not_change_valid_outputs():
    torch.manual_seed(0)
    ad = Conv1dMlpAdapter(input_size=8, output_size=8, num_conv_layers=2).eval()
    x = torch.randn(1, 30, 8)
    y_short, n = ad(x, torch.tensor([30]))
    padded = torch.cat([x, torch.randn(1, 10, 8)], dim=1)
    y_long, _ = ad(padded, torch.tensor([30]))
    assert torch.allclose(y_short[0, : int(n)], y_long[0, : int(n)], atol=1e-6)


def test_gradients_reach_all_parameters():
    ad = Conv1dMlpAdapter(input_size=8, output_size=4, num_conv_layers=1)
    y, _ = ad(torch.randn(2, 12, 8), torch.tensor([12, 9]))
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ad.parameters())


def test_bad_arguments_and_too_short_input():
    with pytest.raises(ValueError, match="output_size"):
        Conv1dMlpAdapter(input_size=8, output_size=0)
    with pytest.raises(ValueError, match="stride"):
        Conv1dMlpAdapter(input_size=8, stride=0)
    ad = Conv1dMlpAdapter(input_size=8, kernel_size=5)
    with pytest.raises(ValueError, match="too short"):
        ad(torch.randn(1, 3, 8), torch.tensor([3]))


@pytest.mark.parametrize("size", ["auto", None, 576.0])
def test_output_size_must_be_resolved_before_building(size):
    # "auto" is filled in by LlmASRTask from the LLM; reaching the adapter unfilled (ESPnet's
    # own ASRTask) must say so, not fail with a comparison TypeError
    with pytest.raises(ValueError, match=r"output_size must be the LLM's hidden size .*LlmASRTask"):
        Conv1dMlpAdapter(input_size=16, output_size=size)


@pytest.mark.parametrize("layers,kernel,stride,minimum", [(1, 3, 2, 3), (2, 3, 2, 7), (3, 3, 2, 15), (2, 5, 3, 17)])
def test_short_input_guard_counts_every_conv_layer(layers, kernel, stride, minimum):
    # one frame fewer than the receptive field of the whole stack is named, not a torch error
    # from a later conv layer; the minimum itself gives exactly one output frame
    ad = Conv1dMlpAdapter(input_size=8, output_size=4, num_conv_layers=layers, kernel_size=kernel, stride=stride)
    assert ad.min_input_frames() == minimum
    with pytest.raises(ValueError, match=rf"input has {minimum - 1} encoder frames.*at least {minimum}"):
        ad(torch.randn(1, minimum - 1, 8), torch.tensor([minimum - 1]))
    y, n = ad(torch.randn(1, minimum, 8), torch.tensor([minimum]))
    assert y.shape[1] == 1 and int(n[0]) == 1
    assert int(ad.output_lengths(torch.tensor([minimum - 1]))[0]) == 0


def test_no_conv_layers_need_one_frame():
    ad = Conv1dMlpAdapter(input_size=8, output_size=4, num_conv_layers=0)
    assert ad.min_input_frames() == 1
    y, _ = ad(torch.randn(1, 1, 8), torch.tensor([1]))
    assert y.shape[1] == 1
