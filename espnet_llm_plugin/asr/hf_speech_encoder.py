"""ESPnet encoder wrapping a Hugging Face speech encoder (HuBERT / wav2vec2 / WavLM).

The speech side of the LLM-ASR method of arXiv 2406.17272: raw waveform -> SSL encoder ->
(``conv1d_mlp_adapter`` postencoder) -> LLM decoder. The HF model takes raw 16 kHz samples,
so ESPnet's frontend must be off: ``input_size: 1`` in the YAML makes ``build_model`` skip
the frontend and hand the encoder the padded waveforms ``(B, T)``::

    input_size: 1          # no ESPnet frontend: the encoder gets raw samples
    normalize: null        # utterance_mvn (ESPnet's default) is meant for (B, T, D) features
    specaug: null          # ESPnet's SpecAug works on spectrograms, not waveforms
    encoder: hf_speech
    encoder_conf:
        model_path: /path/to/hubert-large-ll60k   # local dir, loaded with from_pretrained
        layer: -1
        finetune: lora                            # frozen | lora | full
        lora_r: 8
        lora_alpha: 16

Layer numbering follows ``model(..., output_hidden_states=True).hidden_states`` of the installed
transformers (5.x): index 0 is the input of the first Transformer layer, index ``i`` the output
of layer ``i``; for "stable layer norm" models (HuBERT-large, wav2vec2-large-lv60, WavLM-large)
these are taken before the encoder's final LayerNorm (``final_layer_norm: true`` applies it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from transformers import AutoConfig, AutoModel

from espnet_llm_plugin.core.base_weights import track_frozen_base
from espnet_llm_plugin.core.finetune import (
    LoraOptions,
    finetune_pretrained_encoder,
    lora_initial_state,
    parameter_counts,
)

logger = logging.getLogger(__name__)

# Model types whose structure (CNN feature encoder + encoder.layers) and output-length
# arithmetic this class is tested with. Others (e.g. SEW, which pools frames) would get
# wrong output lengths silently, so they are refused.
SUPPORTED_MODEL_TYPES = ("hubert", "wav2vec2", "wavlm")


def receptive_field(conv_kernel: List[int], conv_stride: List[int]) -> int:
    """Fewest samples that give one output frame of a CNN feature encoder (400 for wav2vec2)."""
    n = 1
    for k, s in zip(reversed(list(conv_kernel)), reversed(list(conv_stride))):
        n = (n - 1) * s + k
    return n


def _read_preprocessor_config(model_path: Optional[str]) -> Dict[str, Any]:
    """The checkpoint's ``preprocessor_config.json`` (HF feature extractor settings), or ``{}``."""
    if model_path is None:
        return {}
    path = Path(model_path) / "preprocessor_config.json"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_waveform_batch(xs_pad: torch.Tensor, ilens: torch.Tensor, who: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check an ESPnet batch of raw waveforms; shared by the encoders that take samples.

    Args:
        xs_pad: ``(B, T)`` or ``(B, T, 1)`` padded samples.
        ilens: ``(B,)`` valid samples per utterance.
        who: the class name, for messages.

    Returns:
        ``(B, T)`` samples and ``(B,)`` lengths as int64 on the CPU (for Python-side checks).
    """
    if xs_pad.dim() == 3 and xs_pad.size(-1) == 1:
        xs_pad = xs_pad.squeeze(-1)
    if xs_pad.dim() != 2:
        raise ValueError(
            f"{who} expects raw mono waveforms (B, T) or (B, T, 1), got shape "
            f"{tuple(xs_pad.shape)}; is an ESPnet frontend on (set 'input_size: 1') or is "
            "the audio multi-channel?"
        )
    if ilens.dim() != 1 or ilens.size(0) != xs_pad.size(0):
        raise ValueError(f"{who}: ilens must be (B,) = ({xs_pad.size(0)},), got {tuple(ilens.shape)}")
    lens_cpu = ilens.detach().to("cpu", torch.long)
    if int(lens_cpu.max()) > xs_pad.size(1):
        raise ValueError(f"{who}: ilens.max()={int(lens_cpu.max())} exceeds the padded length {xs_pad.size(1)}")
    return xs_pad, lens_cpu


def restore_pretrained_state(
    hf_model: torch.nn.Module,
    pretrained: Dict[str, torch.Tensor],
    lora_state: Dict[str, torch.Tensor],
    where: str,
) -> None:
    """Copy pretrained weights (and the initial LoRA adapters) into ``hf_model`` in place.

    ``hf_model`` is the Hugging Face model, LoRA layers injected or not: peft moves a wrapped
    Linear's weight under ``.base_layer``, which is mapped back to the pretrained key. Raises
    naming ``where`` when a parameter has no pretrained value (nothing is left re-initialised
    silently).
    """
    missing = []
    with torch.no_grad():
        for key, tensor in hf_model.state_dict().items():
            if ".lora_" in key:
                source = lora_state.get(key)
            else:
                source = pretrained.get(key.replace(".base_layer", ""))
            if source is None:
                missing.append(key)
                continue
            tensor.copy_(source)
    if missing:
        raise RuntimeError(f"{where}: no pretrained value for {len(missing)} parameters (e.g. {missing[:3]})")


class HfSpeechEncoder(AbsEncoder):
    """A Hugging Face SSL speech encoder as an ESPnet encoder (registered as ``hf_speech``).

    Args:
        input_size: ESPnet's input dimension; must be 1 (raw waveform, ``input_size: 1`` in the
            YAML, which also turns ESPnet's frontend off).
        model_path: local directory of a pretrained HF model (``save_pretrained`` layout),
            loaded with ``AutoModel.from_pretrained(..., local_files_only=True)``.
        config: instead of ``model_path``, a config dict (with ``model_type``) or a path to a
            ``config.json`` / model directory: builds a randomly initialised model (tests, demos).
        layer: which entry of ``hidden_states`` to return; ``-1`` is the last layer, ``0`` the
            input of the first Transformer layer. Layers above it are removed, not computed.
        final_layer_norm: apply the encoder's final LayerNorm to the selected layer (only
            "stable layer norm" models have one; ``last_hidden_state`` of such a model equals
            ``layer: -1, final_layer_norm: true``). Ignored for post-LN models.
        finetune: ``frozen`` | ``lora`` | ``full`` (see :mod:`espnet_llm_plugin.core.finetune`).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA options (paper: r=8,
            alpha=16); ``lora_target_modules: null`` puts adapters on every ``nn.Linear``.
        freeze_feature_extractor: keep the CNN feature encoder frozen (common practice). With
            ``false`` only ``finetune: full`` trains it (LoRA has no Linear layer there).
        normalize_waveform: zero-mean unit-variance per utterance (over its valid samples), as
            HF feature extractors do with ``do_normalize``. ``None``: the checkpoint's
            ``preprocessor_config.json`` decides, else ``True``.
        use_attention_mask: pass the padding mask to the HF model. ``None``: the checkpoint's
            ``preprocessor_config.json`` (``return_attention_mask``) decides, else ``True`` for
            layer-norm feature encoders and ``False`` for group-norm ones (wav2vec2-base,
            HuBERT-base: HF's advice, those were trained on zero-padded batches without masks).
        layerdrop: HF LayerDrop probability while training. Default 0: skipped layers leave
            parameters without gradients, which DDP (``unused_parameters: false``) rejects.
        apply_spec_augment: HF's built-in time masking while training (``mask_time_prob``...);
            off by default (deterministic, and it fails on very short utterances).
        hf_config_overrides: other HF config fields to set (e.g. ``hidden_dropout: 0.0``).
        gradient_checkpointing: recompute the Transformer layers' activations in backward
            instead of keeping them (Hugging Face's switch, non-reentrant; a trainable CNN
            feature encoder is checkpointed too): less training memory for about one more
            encoder forward pass. Training mode only; no effect with ``finetune: frozen`` (no
            backward through the encoder). See
            :func:`espnet_llm_plugin.core.finetune.enable_gradient_checkpointing`.
    """

    def __init__(
        self,
        input_size: int = 1,
        model_path: Optional[str] = None,
        config: Optional[Union[Dict[str, Any], str]] = None,
        layer: int = -1,
        final_layer_norm: bool = False,
        finetune: str = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Optional[List[str]] = None,
        freeze_feature_extractor: bool = True,
        normalize_waveform: Optional[bool] = None,
        use_attention_mask: Optional[bool] = None,
        layerdrop: float = 0.0,
        apply_spec_augment: bool = False,
        hf_config_overrides: Optional[Dict[str, Any]] = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if input_size != 1:
            raise ValueError(
                f"HfSpeechEncoder takes raw waveforms, but ESPnet gave input_size={input_size} "
                "(the output size of a frontend). Set 'input_size: 1' in the config: it turns "
                "ESPnet's frontend off so the encoder receives the samples (B, T)."
            )
        if (model_path is None) == (config is None):
            raise ValueError(
                "HfSpeechEncoder: give exactly one of encoder_conf.model_path (pretrained model "
                "directory) or encoder_conf.config (random initialisation), got "
                f"model_path={model_path!r}, config={'set' if config is not None else None}"
            )
        self.finetune = finetune
        self._model_path = None if model_path is None else str(model_path)

        overrides = dict(hf_config_overrides or {})
        # our explicit options win over the checkpoint's config
        overrides["layerdrop"] = float(layerdrop)
        overrides["apply_spec_augment"] = bool(apply_spec_augment)
        hf_config = self._load_config(model_path, config)
        for key, value in overrides.items():
            if not hasattr(hf_config, key):
                raise ValueError(
                    f"encoder_conf.hf_config_overrides.{key}: not a field of the {hf_config.model_type} config"
                )
            setattr(hf_config, key, value)

        model = self._load_model(model_path, hf_config)
        num_layers = int(hf_config.num_hidden_layers)
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"encoder_conf.layer={layer} is out of range for a model with {num_layers} "
                f"layers: use 0..{num_layers} (0 = input of the first layer, {num_layers} = last "
                f"layer) or -{num_layers + 1}..-1"
            )
        self.layer = layer % (num_layers + 1)
        self._num_layers_total = num_layers
        self._truncate(model, self.layer, final_layer_norm)

        # the pretrained state for reload_pretrained_parameters() when there is no directory to
        # reload from (config mode: small models only)
        self._init_state: Optional[Dict[str, torch.Tensor]] = None
        if self._model_path is None:
            self._init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

        opts = LoraOptions(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=lora_target_modules)
        self.model, self.gradient_checkpointing = finetune_pretrained_encoder(
            model, finetune, opts, gradient_checkpointing
        )
        if freeze_feature_extractor or finetune != "full":
            # also clears HF's _requires_grad flag, which otherwise makes the CNN build a graph
            # (requires_grad on its output) even when no parameter of it needs a gradient
            self._hf.feature_extractor._freeze_parameters()
        masked_spec_embed = getattr(self._hf, "masked_spec_embed", None)
        if masked_spec_embed is not None and not apply_spec_augment:
            # never used without masking: a trainable unused parameter breaks DDP
            masked_spec_embed.requires_grad_(False)
        self._lora_state = lora_initial_state(self._hf)  # peft's initial adapters, for reloading

        pre = _read_preprocessor_config(self._model_path)
        if normalize_waveform is None:
            normalize_waveform = bool(pre.get("do_normalize", True))
        if use_attention_mask is None:
            layer_norm_cnn = getattr(hf_config, "feat_extract_norm", "") == "layer"
            use_attention_mask = bool(pre.get("return_attention_mask", layer_norm_cnn))
        self.normalize_waveform = normalize_waveform
        self.use_attention_mask = use_attention_mask
        self.sampling_rate: Optional[int] = pre.get("sampling_rate")
        self.min_samples = receptive_field(hf_config.conv_kernel, hf_config.conv_stride)
        self._output_size = int(hf_config.hidden_size)

        trainable, total = parameter_counts(self)
        logger.info(
            "HfSpeechEncoder: %s, layer %d of %d, finetune=%s, normalize_waveform=%s, "
            "attention_mask=%s, trainable %s / %s",
            hf_config.model_type,
            self.layer,
            num_layers,
            finetune,
            normalize_waveform,
            use_attention_mask,
            f"{trainable:,}",
            f"{total:,}",
        )
        if self._model_path is not None:
            # checkpoints keep the trained parameters + a reference to the frozen base model
            track_frozen_base(self, self.model, self._model_path, where="encoder_conf.model_path")

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _load_config(model_path: Optional[str], config: Optional[Union[Dict[str, Any], str]]):
        if model_path is not None:
            path = Path(model_path)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"encoder_conf.model_path={model_path}: no config.json there; expected a "
                    "directory written by save_pretrained (downloads are not attempted)"
                )
            hf_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            where = f"encoder_conf.model_path={model_path}"
        else:
            if isinstance(config, (str, os.PathLike)):
                path = Path(config)
                if path.is_dir():
                    path = path / "config.json"
                if not path.is_file():
                    raise FileNotFoundError(f"encoder_conf.config={config}: no such config.json")
                with open(path, encoding="utf-8") as f:
                    config = json.load(f)
            if not isinstance(config, dict) or "model_type" not in config:
                raise ValueError(
                    "encoder_conf.config must be a dict (or config.json) with a 'model_type' "
                    f"(one of {SUPPORTED_MODEL_TYPES})"
                )
            config = dict(config)
            hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
            where = "encoder_conf.config"
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"{where}: a {model_type!r} model is not a supported speech encoder; "
                f"HfSpeechEncoder takes {SUPPORTED_MODEL_TYPES} (CNN feature encoder + "
                "Transformer over raw waveforms)"
            )
        return hf_config

    @staticmethod
    def _load_model(model_path: Optional[str], hf_config) -> torch.nn.Module:
        if model_path is None:
            return AutoModel.from_config(hf_config)
        # float32 whatever the checkpoint's dtype: ESPnet's autocast handles mixed precision
        return AutoModel.from_pretrained(str(model_path), config=hf_config, local_files_only=True, dtype=torch.float32)

    @staticmethod
    def _truncate(model: torch.nn.Module, keep: int, final_layer_norm: bool) -> None:
        """Keep the first ``keep`` Transformer layers; drop the final LayerNorm unless asked."""
        encoder = model.encoder
        encoder.layers = encoder.layers[:keep]
        model.config.num_hidden_layers = keep
        if getattr(model.config, "do_stable_layer_norm", False) and not final_layer_norm:
            # stable-LN encoders normalise after the last layer; hidden_states[k] is taken
            # before that, so the truncated model must not apply it either
            encoder.layer_norm = torch.nn.Identity()

    @property
    def _hf(self) -> torch.nn.Module:
        """The Hugging Face model itself (inside the peft wrapper when LoRA is on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    # ------------------------------------------------------------------ ESPnet interface
    def output_size(self) -> int:
        return self._output_size

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts for ``lengths`` samples (the CNN's kernel/stride arithmetic)."""
        return self._hf._get_feat_extract_output_lengths(lengths).to(torch.long)

    def train(self, mode: bool = True) -> "HfSpeechEncoder":
        super().train(mode)
        if self.finetune == "frozen":
            # a frozen encoder is a fixed feature extractor: no dropout / layerdrop / masking
            self.model.eval()
        return self

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """Encode padded waveforms.

        Args:
            xs_pad: ``(B, T)`` or ``(B, T, 1)`` raw samples at the model's rate (16 kHz).
            ilens: ``(B,)`` valid samples per utterance.
            prev_states: unused (ESPnet interface).

        Returns:
            ``(B, T', D)`` hidden states of ``layer``, ``(B,)`` frame counts, ``None``.
        """
        xs_pad, lens_cpu = check_waveform_batch(xs_pad, ilens, "HfSpeechEncoder")
        shortest = int(lens_cpu.min())
        if shortest < self.min_samples:
            idx = int(lens_cpu.argmin())
            raise ValueError(
                f"HfSpeechEncoder: utterance {idx} of the batch has {shortest} samples, fewer than "
                f"the {self.min_samples} samples of the CNN feature encoder's receptive field "
                "(no output frame); filter out such short utterances"
            )
        t_max = int(lens_cpu.max())
        ilens = ilens.to(device=xs_pad.device, dtype=torch.long)
        # trim extra padding: ESPnet asserts encoder_out.size(1) <= encoder_out_lens.max()
        x = xs_pad[:, :t_max].to(next(self._hf.parameters()).dtype)
        valid = torch.arange(t_max, device=x.device)[None, :] < ilens[:, None]  # (B, T)

        if self.normalize_waveform:
            x = self._normalize(x, valid, ilens)
        else:
            x = x.masked_fill(~valid, 0.0)  # HF models are fed zero padding
        attention_mask = None
        if self.use_attention_mask and shortest < t_max:
            attention_mask = valid.long()

        grad = contextlib.nullcontext() if self.finetune != "frozen" else torch.no_grad()
        with grad:
            out = self.model(input_values=x, attention_mask=attention_mask).last_hidden_state
        olens = self.output_lengths(ilens)
        return out, olens, None

    @staticmethod
    def _normalize(x: torch.Tensor, valid: torch.Tensor, ilens: torch.Tensor) -> torch.Tensor:
        """Per-utterance zero mean, unit variance over valid samples; padding set to 0.

        Matches ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` (population variance,
        eps 1e-7). ``x``: ``(B, T)``.
        """
        n = ilens.to(x.dtype)[:, None]
        x = x.masked_fill(~valid, 0.0)
        mean = x.sum(dim=1, keepdim=True) / n
        var = ((x - mean).masked_fill(~valid, 0.0) ** 2).sum(dim=1, keepdim=True) / n
        return ((x - mean) / torch.sqrt(var + 1e-7)).masked_fill(~valid, 0.0)

    # ------------------------------------------------------------------ pretrained weights
    def reload_pretrained_parameters(self) -> None:
        """Restore pretrained weights (and fresh LoRA adapters) after ESPnet's ``init:``.

        ESPnet's ``initialize`` re-initialises every parameter and then calls this, so the
        encoder keeps its pretrained weights. Weights are re-read from ``model_path`` rather
        than kept as a second in-memory copy.
        """
        if self._model_path is not None:
            # our config (same overrides, so the same parameters exist), all layers
            config = copy.deepcopy(self._hf.config)
            config.num_hidden_layers = self._num_layers_total
            fresh = AutoModel.from_pretrained(
                self._model_path, config=config, local_files_only=True, dtype=torch.float32
            )
            pretrained = fresh.state_dict()
            del fresh
        else:
            pretrained = self._init_state or {}
        restore_pretrained_state(
            self._hf,
            pretrained,
            self._lora_state,
            f"HfSpeechEncoder.reload_pretrained_parameters ({self._model_path or 'the initial state'})",
        )
        logger.info(
            "HfSpeechEncoder: reloaded pretrained parameters from %s",
            self._model_path or "the initial state",
        )
