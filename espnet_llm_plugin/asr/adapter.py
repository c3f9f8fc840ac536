"""Conv1d + MLP adapter between a speech encoder and a decoder-only LLM (arXiv 2406.17272)."""

from __future__ import annotations

from typing import Tuple

import torch
from espnet2.asr.postencoder.abs_postencoder import AbsPostEncoder


class Conv1dMlpAdapter(AbsPostEncoder):
    """Downsample encoder frames with strided Conv1d layers, then project with an MLP.

    Registered as the ESPnet postencoder ``conv1d_mlp_adapter``, so it sits between any
    ESPnet encoder and decoder.

    Args:
        input_size: encoder output width ``D_enc`` (ESPnet passes it as ``input_size``).
        output_size: LLM hidden size ``D_llm``. In a config with ``decoder: llm`` /
            ``llm_xattn`` it may be left out or ``auto``: ``LlmASRTask`` fills it from the LLM
            (:mod:`espnet_llm_plugin.asr.llm_auto_conf`) before this class is built.
        conv_channels: channels of the conv layers (defaults to ``input_size``).
        kernel_size: conv kernel size.
        stride: stride of each conv layer; total downsampling is ``stride ** num_conv_layers``.
        num_conv_layers: number of conv layers (0 keeps the frame rate).
        mlp_hidden_size: hidden width of the 2-layer MLP (defaults to ``output_size``).
        dropout: dropout after the conv stack.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        conv_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 2,
        num_conv_layers: int = 1,
        mlp_hidden_size: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(output_size, bool) or not isinstance(output_size, int):
            # "auto" reaching here: built by a task that does not read the LLM (ESPnet's own)
            raise ValueError(
                f"Conv1dMlpAdapter: postencoder_conf.output_size must be the LLM's hidden size "
                f"(an integer), got {output_size!r}; 'auto' is filled in from "
                f"decoder_conf.llm_path by espnet_llm_plugin's LlmASRTask (bin.asr_train, "
                f"bin.asr_inference), not by ESPnet's own ASRTask"
            )
        if input_size <= 0 or output_size <= 0:
            raise ValueError(
                f"Conv1dMlpAdapter: input_size and output_size must be positive, "
                f"got input_size={input_size}, output_size={output_size}"
            )
        if kernel_size < 1 or stride < 1 or num_conv_layers < 0:
            raise ValueError(
                f"Conv1dMlpAdapter: need kernel_size>=1, stride>=1, num_conv_layers>=0; got "
                f"kernel_size={kernel_size}, stride={stride}, num_conv_layers={num_conv_layers}"
            )
        channels = conv_channels or input_size
        self.kernel_size, self.stride, self.num_conv_layers = kernel_size, stride, num_conv_layers
        layers = []
        width = input_size
        for _ in range(num_conv_layers):
            layers += [torch.nn.Conv1d(width, channels, kernel_size, stride), torch.nn.GELU()]
            width = channels
        self.conv = torch.nn.Sequential(*layers)
        self.dropout = torch.nn.Dropout(dropout)
        hidden = mlp_hidden_size or output_size
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, output_size)
        )
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts after the conv stack (no padding: ``floor((T - k) / s) + 1``)."""
        for _ in range(self.num_conv_layers):
            lengths = torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def min_input_frames(self) -> int:
        """Fewest input frames that give one output frame through every conv layer.

        Walks the stack backwards from one output frame: a layer needs
        ``(n_out - 1) * stride + dilation * (kernel - 1) + 1 - 2 * padding`` input frames.
        """
        frames = 1
        for layer in reversed([m for m in self.conv if isinstance(m, torch.nn.Conv1d)]):
            (k,), (s,), (d,) = layer.kernel_size, layer.stride, layer.dilation
            pad = layer.padding[0] if isinstance(layer.padding, tuple) else 0
            frames = max(1, (frames - 1) * s + d * (k - 1) + 1 - 2 * pad)
        return frames

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Adapt encoder output.

        Args:
            input: ``(B, T, D_enc)`` encoder frames.
            input_lengths: ``(B,)`` valid frames per utterance.

        Returns:
            ``(B, T', D_llm)`` adapted frames and ``(B,)`` their lengths.
        """
        min_frames = self.min_input_frames()
        if input.size(1) < min_frames:
            # the padded batch is shorter than the conv stack's receptive field: torch would
            # fail inside a later conv layer with a kernel-size error
            raise ValueError(
                f"Conv1dMlpAdapter: input has {input.size(1)} encoder frames, but "
                f"{self.num_conv_layers} conv layers (kernel_size {self.kernel_size}, stride "
                f"{self.stride}) need at least {min_frames} for one output frame; the utterance "
                f"is too short for this adapter (drop it or lower postencoder_conf.num_conv_layers)"
            )
        x = self.conv(input.transpose(1, 2)).transpose(1, 2)  # (B, T', C)
        x = self.mlp(self.dropout(x))
        return x, self.output_lengths(input_lengths).clamp(max=x.size(1))
