"""Frame features for discrete speech units: waveform ``(L,)`` at 16 kHz -> frames ``(T, D)``.

Discrete units (arXiv 2406.09618) are k-means cluster ids of frame features. Three sources:

* ``fbank``: log-mel filterbanks (25 ms window, 10 or 20 ms hop); needs nothing else.
* ``hf``: a Hugging Face speech encoder from a local ``save_pretrained`` directory, hidden state
  of a chosen layer (20 ms frames): an SSL model (HuBERT / wav2vec2 / WavLM; the paper uses
  HuBERT), or Whisper's encoder (detected from the directory's ``config.json``).
* ``espnet_asr``: a trained ESPnet ASR model (``config.yaml`` + ``.pth``): frontend,
  normalisation and encoder, output of a chosen encoder block or the final output.

Each extractor is described by a JSON-able spec (``{"type": "fbank", "hop_ms": 20}``), stored
with the k-means model so the same features are computed again when units are dumped.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import librosa
import numpy as np
import torch
import yaml

from espnet_llm_plugin import register
from espnet_llm_plugin.asr.hf_speech_encoder import HfSpeechEncoder
from espnet_llm_plugin.asr.whisper_encoder import HfWhisperEncoder, is_whisper_dir
from espnet_llm_plugin.core.device import resolve_device
from espnet_llm_plugin.espnet_fixes import CheckpointLoadError, apply_espnet_fixes
from espnet_llm_plugin.fileio.audio import read_audio, resample
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir, read_scp
from espnet_llm_plugin.quiet import quiet_espnet_import

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FEATURE_TYPES = ("fbank", "hf", "espnet_asr")


class FeatureError(ValueError):
    """Audio or a feature spec that an extractor cannot use (the message names what)."""


class ShortAudioError(FeatureError):
    """An utterance shorter than the extractor's first frame."""


def _where(utt_id: str) -> str:
    return f"utterance '{utt_id}'" if utt_id else "audio"


class FeatureExtractor(ABC):
    """Waveforms -> frame features. Frozen and deterministic (eval mode, no gradients).

    Subclasses implement :meth:`forward_batch`; :meth:`extract` handles one utterance.
    """

    sample_rate: int = SAMPLE_RATE

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature dimension ``D``."""

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """Fewest samples that give one frame."""

    @property
    @abstractmethod
    def spec(self) -> Dict[str, Any]:
        """JSON-able description; ``build_feature_extractor(spec)`` rebuilds this extractor."""

    @abstractmethod
    def forward_batch(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` padded float waveforms + ``(B,)`` sample counts -> ``(B, T, D)`` float32
        features (padding frames arbitrary) + ``(B,)`` frame counts. Every length must be at
        least :attr:`min_samples` (checked by the caller)."""

    device: str = "cpu"

    def to(self, device: str) -> "FeatureExtractor":
        self.device = device
        return self

    def check_lengths(self, lengths: Sequence[int], utt_ids: Optional[Sequence[str]] = None) -> None:
        """Raise :class:`ShortAudioError` naming the first utterance too short for one frame."""
        for i, n in enumerate(lengths):
            if int(n) < self.min_samples:
                name = utt_ids[i] if utt_ids is not None else f"#{i} of the batch"
                raise ShortAudioError(
                    f"{_where(name)}: {int(n)} samples ({int(n) / self.sample_rate * 1000:.1f} ms) "
                    f"is shorter than one frame of the {self.spec['type']} features "
                    f"({self.min_samples} samples); remove it from the data or pad it"
                )

    @torch.no_grad()
    def extract(self, wav: Union[np.ndarray, torch.Tensor], utt_id: str = "") -> np.ndarray:
        """One utterance ``(L,)`` -> ``(T, D)`` float32 numpy frames."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not torch.is_tensor(wav) else wav)
        if x.dim() != 1:
            raise FeatureError(f"{_where(utt_id)}: expected a mono waveform (L,), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise FeatureError(f"{_where(utt_id)}: waveform has NaN or infinite samples")
        self.check_lengths([x.numel()], [utt_id or "audio"])
        lengths = torch.tensor([x.numel()], dtype=torch.long, device=self.device)
        feats, flens = self.forward_batch(x[None].to(self.device, torch.float32), lengths)
        n = int(flens[0])
        if n < 1:
            raise ShortAudioError(f"{_where(utt_id)}: no frame from {x.numel()} samples")
        return feats[0, :n].float().cpu().numpy()


# ---------------------------------------------------------------------------------- fbank
class FbankExtractor(FeatureExtractor):
    """Log-mel filterbanks: Hann window, power spectrum, mel filters (librosa/Slaney), log.

    Frames are not centred (no padding): ``T = 1 + (L - win) // hop`` for ``L >= win``.

    Args:
        n_mels: number of mel bands ``D``.
        win_ms, hop_ms: window and hop in milliseconds (25 / 10 or 20).
        n_fft: FFT size (>= window).
        fmin, fmax: mel range in Hz (``fmax=None``: Nyquist).
        cmn: subtract each utterance's mean (removes channel/loudness offsets, which helps
            k-means cluster content rather than recording conditions).
    """

    def __init__(
        self,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 20.0,
        n_fft: int = 512,
        fmin: float = 20.0,
        fmax: Optional[float] = None,
        cmn: bool = True,
    ):
        self.win = int(round(win_ms * SAMPLE_RATE / 1000))
        self.hop = int(round(hop_ms * SAMPLE_RATE / 1000))
        if self.win < 1 or self.hop < 1:
            raise FeatureError(f"fbank: win_ms={win_ms} and hop_ms={hop_ms} must be positive")
        if n_fft < self.win:
            raise FeatureError(f"fbank: n_fft={n_fft} is smaller than the window ({self.win} samples)")
        if n_mels < 1:
            raise FeatureError(f"fbank: n_mels={n_mels} must be >= 1")
        self._conf = dict(
            n_mels=int(n_mels),
            win_ms=float(win_ms),
            hop_ms=float(hop_ms),
            n_fft=int(n_fft),
            fmin=float(fmin),
            fmax=None if fmax is None else float(fmax),
            cmn=bool(cmn),
        )
        self.n_fft = n_fft
        self.cmn = cmn
        mel = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
        )  # (n_mels, n_fft // 2 + 1)
        self._mel = torch.from_numpy(mel.astype(np.float32))
        self._window = torch.hann_window(self.win, periodic=True)

    @property
    def dim(self) -> int:
        return self._conf["n_mels"]

    @property
    def min_samples(self) -> int:
        return self.win

    @property
    def frame_shift_s(self) -> float:
        return self.hop / SAMPLE_RATE

    @property
    def spec(self) -> Dict[str, Any]:
        return {"type": "fbank", **self._conf}

    def forward_batch(self, wavs, lengths):
        wavs = wavs.to(torch.float32)
        frames = wavs.unfold(1, self.win, self.hop)  # (B, T, win)
        frames = frames * self._window.to(wavs.device)
        spec = torch.fft.rfft(frames, n=self.n_fft, dim=-1).abs().pow(2)  # (B, T, F)
        feats = torch.log(spec @ self._mel.to(wavs.device).T + 1e-6)  # (B, T, n_mels)
        flens = torch.clamp((lengths.to(wavs.device) - self.win) // self.hop + 1, min=0)
        if self.cmn:
            valid = torch.arange(feats.size(1), device=feats.device)[None] < flens[:, None]
            valid = valid[..., None].to(feats.dtype)
            mean = (feats * valid).sum(1, keepdim=True) / flens.clamp(min=1)[:, None, None]
            feats = (feats - mean) * valid
        return feats, flens


# ---------------------------------------------------------------------------------- HF SSL
class HfEncoderExtractor(FeatureExtractor):
    """A Hugging Face speech encoder (local directory), hidden state of ``layer``.

    HuBERT / wav2vec2 / WavLM load through
    :class:`espnet_llm_plugin.asr.hf_speech_encoder.HfSpeechEncoder`, Whisper (``model_type``
    ``whisper`` in ``config.json``) through
    :class:`espnet_llm_plugin.asr.whisper_encoder.HfWhisperEncoder`, both frozen, so layer
    numbering, input normalisation and padding are those of the LLM-ASR encoders: ``layer`` 0 is
    the input of the first Transformer layer, ``i`` the output of layer ``i``, ``-1`` the last.
    Layers above ``layer`` are not computed.

    ``final_layer_norm``: apply the encoder's final LayerNorm to the selected layer. ``None``:
    no for SSL models; for Whisper only on its last layer (Whisper's encoder output). Whisper
    sees at most 30 s at once: longer audio is encoded in consecutive 30 s pieces (1500 frames
    each), so every frame stays on the 20 ms grid.
    """

    def __init__(self, path: str, layer: int = -1, final_layer_norm: Optional[bool] = None):
        p = Path(path)
        if not (p / "config.json").is_file():
            raise FeatureError(
                f"hf features: '{path}' is not a Hugging Face model directory (no config.json); "
                "give a local save_pretrained directory (nothing is downloaded)"
            )
        self._path = str(p.absolute())
        self._whisper = is_whisper_dir(self._path)
        if self._whisper:
            self.encoder = HfWhisperEncoder(
                input_size=1,
                model_path=self._path,
                layer=int(layer),
                finetune="frozen",
                final_layer_norm=final_layer_norm,
            ).eval()
            self._final_ln = self.encoder.final_layer_norm
        else:
            self.encoder = HfSpeechEncoder(
                input_size=1,
                model_path=self._path,
                layer=int(layer),
                finetune="frozen",
                final_layer_norm=bool(final_layer_norm),
            ).eval()
            self._final_ln = bool(final_layer_norm)
        sr = self.encoder.sampling_rate
        if sr is not None and int(sr) != SAMPLE_RATE:
            raise FeatureError(f"hf features: model '{path}' expects {sr} Hz audio, not {SAMPLE_RATE}")
        self._layer = int(layer)

    def to(self, device: str) -> "HfEncoderExtractor":
        self.encoder.to(device)
        self.device = device
        return self

    @property
    def dim(self) -> int:
        return self.encoder.output_size()

    @property
    def min_samples(self) -> int:
        return self.encoder.min_samples

    @property
    def spec(self) -> Dict[str, Any]:
        return {"type": "hf", "path": self._path, "layer": self._layer, "final_layer_norm": self._final_ln}

    def forward_batch(self, wavs, lengths):
        limit = self.encoder.max_samples if self._whisper else None
        if limit is None or int(lengths.max()) <= limit:
            feats, flens, _ = self.encoder(wavs, lengths)
            return feats.float(), flens
        # Whisper: one utterance at a time, in consecutive 30 s pieces encoded as a batch
        outs = []
        for i in range(wavs.size(0)):
            n = int(lengths[i])
            pieces = [wavs[i, s : min(s + limit, n)] for s in range(0, n, limit)]
            plens = torch.tensor([x.numel() for x in pieces], device=wavs.device)
            feats, flens, _ = self.encoder(torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True), plens)
            outs.append(torch.cat([feats[j, : int(flens[j])] for j in range(len(pieces))]))
        flens = torch.tensor([o.size(0) for o in outs], device=wavs.device)
        return torch.nn.utils.rnn.pad_sequence(outs, batch_first=True).float(), flens


# ---------------------------------------------------------------------------------- ESPnet ASR
def _resolve_relative_paths(config: Dict[str, Any], config_path: Path) -> Dict[str, Any]:
    """ESPnet configs hold paths relative to the recipe directory (``normalize_conf.stats_file``);
    when they do not resolve from the working directory, look upwards from the config's folder."""
    config = copy.deepcopy(config)
    conf = config.get("normalize_conf") or {}
    stats = conf.get("stats_file")
    if stats and not Path(stats).is_absolute() and not Path(stats).exists():
        for base in config_path.resolve().parents:
            if (base / stats).is_file():
                conf["stats_file"] = str(base / stats)
                break
        else:
            raise FeatureError(
                f"{config_path}: normalize_conf.stats_file '{stats}' not found from the working "
                "directory nor from any folder above the config; run from the recipe directory"
            )
    return config


class EspnetAsrEncoderExtractor(FeatureExtractor):
    """A trained ESPnet ASR model's encoder: frontend -> normalize -> (pre)encoder.

    Args:
        config: the model's ``config.yaml``.
        model_file: its ``.pth`` (e.g. ``valid.acc.ave.pth``).
        layer: ``-1`` (default): the encoder's final output (after its final norm and any
            postencoder, as ``ESPnetASRModel.encode`` returns it); ``i >= 1``: output of
            encoder block ``i`` (1-based, before the final norm).
    """

    def __init__(self, config: str, model_file: str, layer: int = -1):
        cfg_path, model_path = Path(config), Path(model_file)
        for p, what in ((cfg_path, "config"), (model_path, "model file")):
            if not p.is_file():
                raise FeatureError(f"espnet_asr features: {what} '{p}' not found")
        with quiet_espnet_import():
            from espnet2.tasks.asr import ASRTask
        register()  # configs may name our components
        apply_espnet_fixes()  # ESPnet's model loading reads the .pth weights-only
        with open(cfg_path, encoding="utf-8") as f:
            conf = yaml.safe_load(f)
        conf = _resolve_relative_paths(conf, cfg_path)
        with tempfile.TemporaryDirectory() as tmp:
            patched = Path(tmp) / "config.yaml"
            patched.write_text(yaml.safe_dump(conf), encoding="utf-8")
            try:
                model, _ = ASRTask.build_model_from_file(str(patched), str(model_path), "cpu")
            except CheckpointLoadError as e:  # crafted or truncated: named, as our errors are
                raise FeatureError(f"espnet_asr features: model file {e}") from e
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        blocks = getattr(self.model.encoder, "encoders", None)
        self._num_blocks = len(blocks) if blocks is not None else 0
        layer = int(layer)
        if layer != -1 and not 1 <= layer <= self._num_blocks:
            raise FeatureError(
                f"espnet_asr features: layer={layer} out of range; the encoder has "
                f"{self._num_blocks} blocks (use 1..{self._num_blocks}, or -1 for the final output)"
            )
        self._layer = layer
        self._config = str(cfg_path.absolute())
        self._model_file = str(model_path.absolute())
        self._dim = self._probe_dim()
        self._min_samples: Optional[int] = None

    def to(self, device: str) -> "EspnetAsrEncoderExtractor":
        self.model.to(device)
        self.device = device
        return self

    @property
    def spec(self) -> Dict[str, Any]:
        return {"type": "espnet_asr", "config": self._config, "model_file": self._model_file, "layer": self._layer}

    @property
    def dim(self) -> int:
        return self._dim

    def _frames(self, n: int) -> int:
        """Frames for ``n`` samples, 0 when the model gives none (or fails on so little)."""
        wav = torch.zeros(1, n, device=self.device)
        try:
            _, flens = self.forward_batch(wav, torch.tensor([n], device=self.device))
        except Exception:  # e.g. ESPnet's TooShortUttError from subsampling layers
            return 0
        return int(flens[0])

    def _probe_dim(self) -> int:
        wav = torch.zeros(1, SAMPLE_RATE, device=self.device)
        feats, _ = self.forward_batch(wav, torch.tensor([SAMPLE_RATE], device=self.device))
        return int(feats.size(-1))

    @property
    def min_samples(self) -> int:
        """Found by bisection (subsampling layers make it model-specific); cached."""
        if self._min_samples is None:
            lo, hi = 1, SAMPLE_RATE  # a second always gives frames (checked by _probe_dim)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._frames(mid) >= 1:
                    hi = mid
                else:
                    lo = mid + 1
            self._min_samples = lo
        return self._min_samples

    @torch.no_grad()
    def forward_batch(self, wavs, lengths):
        lengths = lengths.to(wavs.device, torch.long)
        captured: List[torch.Tensor] = []
        handle = None
        if self._layer != -1:

            def hook(_module, _inputs, output):
                # ESPnet blocks return (x, mask) or ((x, pos_emb), mask)
                x = output[0]
                captured.append(x[0] if isinstance(x, tuple) else x)

            handle = self.model.encoder.encoders[self._layer - 1].register_forward_hook(hook)
        try:
            with warnings.catch_warnings():  # ESPnet's deprecated torch.cuda.amp.autocast call
                warnings.simplefilter("ignore", FutureWarning)
                out, olens = self.model.encode(wavs, lengths)
        finally:
            if handle is not None:
                handle.remove()
        if captured:
            out = captured[-1]
        return out.float(), olens


# ---------------------------------------------------------------------------------- factory
def build_feature_extractor(spec: Dict[str, Any], device: str = "cpu") -> FeatureExtractor:
    """Build an extractor from a JSON-able spec.

    Examples::

        {"type": "fbank", "n_mels": 80, "hop_ms": 20}
        {"type": "hf", "path": "/models/hubert-base-ls960", "layer": 6}
        {"type": "hf", "path": "/models/whisper-tiny.en", "layer": 2}   # Whisper: detected
        {"type": "espnet_asr", "config": "exp/asr/config.yaml",
         "model_file": "exp/asr/valid.acc.ave.pth", "layer": -1}
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise FeatureError(f"feature spec must be a dict with a 'type' ({FEATURE_TYPES}), got {spec!r}")
    kind = spec["type"]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    classes = {"fbank": FbankExtractor, "hf": HfEncoderExtractor, "espnet_asr": EspnetAsrEncoderExtractor}
    if kind not in classes:
        raise FeatureError(f"feature spec: unknown type '{kind}', expected one of {FEATURE_TYPES}")
    try:
        extractor = classes[kind](**kwargs)
    except TypeError as e:
        raise FeatureError(f"feature spec {spec!r}: {e}") from e
    return extractor.to(resolve_device(device))


# ---------------------------------------------------------------------------------- audio input
class UtteranceAudio:
    """Utterances of Kaldi data dirs (``segments`` honoured) and/or bare ``wav.scp`` files.

    ``read(utt)`` returns the mono float32 waveform at 16 kHz (other rates resampled);
    errors name the utterance.
    """

    def __init__(self, data_dirs: Sequence[Union[str, Path]] = (), wav_scps: Sequence[Union[str, Path]] = ()):
        self._sources: Dict[str, Tuple[str, float, float]] = {}
        origins: Dict[str, str] = {}

        def add(utt: str, source: Tuple[str, float, float], origin: str) -> None:
            if utt in self._sources:
                raise DataDirError(f"utterance '{utt}' appears in both {origins[utt]} and {origin}")
            self._sources[utt] = source
            origins[utt] = origin

        for d in data_dirs:
            dd = load_data_dir(d, require_text=False)
            for utt in dd.utt_ids:
                add(utt, dd.audio_source(utt), str(d))
        for scp in wav_scps:
            for utt, value in read_scp(scp).items():
                add(utt, (value, 0.0, -1.0), str(scp))
        if not self._sources:
            raise DataDirError("no utterances: give at least one data dir or wav.scp")
        self.utt_ids: List[str] = sorted(self._sources)
        self._warned_rate = False

    def __len__(self) -> int:
        return len(self.utt_ids)

    def read(self, utt: str) -> np.ndarray:
        spec, begin, end = self._sources[utt]
        wav, sr = read_audio(spec, utt, begin, end)
        if sr != SAMPLE_RATE:
            if not self._warned_rate:
                logger.warning("utterance '%s' is at %d Hz: resampling to %d Hz", utt, sr, SAMPLE_RATE)
                self._warned_rate = True
            wav = resample(wav, sr, SAMPLE_RATE)
        return wav
