"""Waveforms -> discrete speech units, for single utterances and as an ESPnet frontend.

:class:`UnitExtractor` = feature extractor + k-means (``units(wav) -> [ids]``); it is what
``dump_units`` runs. :class:`DiscreteUnitsFrontend` puts the same thing inside an ESPnet model
(frontend ``discrete_units``), so an ASR model can be trained and decoded on units.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend

from espnet_llm_plugin.fileio.unit_file import dedup_units
from espnet_llm_plugin.frontend.kmeans import KMeansModel
from espnet_llm_plugin.frontend.unit_features import (
    SAMPLE_RATE,
    FeatureError,
    FeatureExtractor,
    build_feature_extractor,
)

logger = logging.getLogger(__name__)


class UnitExtractor:
    """Feature extractor + k-means codebook: one utterance -> unit ids.

    Args:
        kmeans_dir: directory written by ``train_kmeans`` (its ``kmeans.json`` holds the
            feature spec, so the features are those the codebook was trained on).
        feature_spec: override the stored spec (e.g. a model directory that moved); its
            dim must still match the codebook.
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    def __init__(
        self,
        kmeans_dir: Union[str, Path],
        feature_spec: Optional[Dict[str, Any]] = None,
        device: str = "cpu",
    ):
        self.kmeans = KMeansModel.load(kmeans_dir)
        spec = feature_spec if feature_spec is not None else self.kmeans.feature_spec
        self.extractor: FeatureExtractor = build_feature_extractor(spec, device=device)
        self.kmeans.check_dim(self.extractor.dim)

    @property
    def num_units(self) -> int:
        return self.kmeans.num_units

    def units(self, wav: Union[np.ndarray, torch.Tensor], utt_id: str = "", dedup: bool = False) -> List[int]:
        """``(L,)`` 16 kHz waveform -> unit ids (one per frame, or run-length de-duplicated)."""
        ids = self.kmeans.predict(self.extractor.extract(wav, utt_id)).tolist()
        return dedup_units(ids) if dedup else ids


def _parse_fs(fs: Union[int, str]) -> int:
    """ESPnet passes ``fs`` as an int or a string such as ``16k``."""
    if isinstance(fs, str):
        s = fs.strip().lower()
        return int(float(s[:-1]) * 1000) if s.endswith("k") else int(float(s))
    return int(fs)


class DiscreteUnitsFrontend(AbsFrontend):
    """ESPnet frontend: padded waveforms ``(B, L)`` -> unit embeddings ``(B, T, E)``.

    Each frame's features (the spec stored in ``kmeans_dir``) are assigned to their nearest
    k-means centroid. ESPnet's frontend contract is a float tensor ``(B, T, D)`` plus lengths,
    so the unit ids are turned into vectors here:

    * ``output: embedding`` (default): a trainable ``nn.Embedding(K, embed_dim)`` lookup, the
      usual input layer of discrete-unit ASR; it is the only trainable part of this frontend.
    * ``output: ids``: the ids themselves as ``(B, T, 1)`` floats (padding ``-1``), for a
      downstream module with its own embedding (``output_size() == 1``).

    The feature extractor and centroids are frozen. The extractor (e.g. a HuBERT) is kept out
    of ``state_dict``/``parameters()`` on purpose: ESPnet's ``init:`` would otherwise
    re-initialise its pretrained weights and the optimiser would see them; it is rebuilt from
    ``kmeans_dir`` whenever the model is built and follows the input's device.
    Use ``normalize: null`` in the ASR config (statistics of embeddings are meaningless
    before training).

    Args:
        kmeans_dir: directory written by ``train_kmeans``.
        fs: sampling rate of the input (int or ESPnet's ``"16k"``); must be 16 kHz.
        dedup: run-length de-duplicate units per utterance (shorter sequences).
        output: ``embedding`` | ``ids``.
        embed_dim: embedding size for ``output: embedding``.
    """

    def __init__(
        self,
        kmeans_dir: str,
        fs: Union[int, str] = SAMPLE_RATE,
        dedup: bool = False,
        output: str = "embedding",
        embed_dim: int = 256,
    ):
        super().__init__()
        if _parse_fs(fs) != SAMPLE_RATE:
            raise FeatureError(f"frontend_conf.fs={fs}: discrete_units works on {SAMPLE_RATE} Hz audio")
        if output not in ("embedding", "ids"):
            raise FeatureError(f"frontend_conf.output={output!r}: use 'embedding' or 'ids'")
        self.kmeans_dir = str(kmeans_dir)
        self.dedup = bool(dedup)
        self.output = output
        unit_extractor = UnitExtractor(kmeans_dir, device="cpu")
        # a plain list hides the extractor from nn.Module registration (see class docstring)
        self._extractor: List[FeatureExtractor] = [unit_extractor.extractor]
        km = unit_extractor.kmeans
        self.normalize_features = km.normalize
        self.num_units = km.num_units
        # non-persistent: they come from kmeans_dir, not from the checkpoint
        self.register_buffer("centroids", torch.from_numpy(km.centroids.copy()), persistent=False)
        self.embed: Optional[torch.nn.Embedding] = None
        if output == "embedding":
            if embed_dim < 1:
                raise FeatureError(f"frontend_conf.embed_dim={embed_dim} must be >= 1")
            self.embed = torch.nn.Embedding(self.num_units, embed_dim)
        self._output_size = embed_dim if output == "embedding" else 1

    @property
    def extractor(self) -> FeatureExtractor:
        return self._extractor[0]

    def output_size(self) -> int:
        return self._output_size

    @torch.no_grad()
    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid: ``(..., D)`` -> ``(...)`` long (same result as KMeansModel.predict
        up to exact float ties)."""
        x = feats.float()
        if self.normalize_features:
            x = torch.nn.functional.normalize(x, dim=-1, eps=1e-12)
        c = self.centroids.to(x.device)
        dist = (x * x).sum(-1, keepdim=True) - 2 * x @ c.T + (c * c).sum(-1)
        return dist.argmin(-1)

    @torch.no_grad()
    def unit_ids(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` + ``(B,)`` -> unit ids ``(B, T)`` long (padding ``-1``) + ``(B,)`` counts."""
        if wavs.dim() == 3 and wavs.size(-1) == 1:
            wavs = wavs.squeeze(-1)
        if wavs.dim() != 2:
            raise FeatureError(f"discrete_units frontend expects mono waveforms (B, L), got {tuple(wavs.shape)}")
        extractor = self.extractor
        if extractor.device != str(wavs.device):
            extractor.to(str(wavs.device))
        extractor.check_lengths(lengths.tolist())
        feats, flens = extractor.forward_batch(wavs.float(), lengths.to(wavs.device))
        ids = self.assign(feats)  # (B, T)
        t = torch.arange(ids.size(1), device=ids.device)[None]
        ids = ids.masked_fill(t >= flens[:, None], -1)
        if self.dedup:
            rows = [dedup_units(row[: int(n)].tolist()) for row, n in zip(ids.cpu(), flens.cpu())]
            flens = torch.tensor([len(r) for r in rows], dtype=torch.long, device=ids.device)
            ids = torch.full((len(rows), max(int(flens.max()), 1)), -1, dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            ids = ids.to(wavs.device)
        return ids, flens.to(torch.long)

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` waveforms + ``(B,)`` lengths -> ``(B, T, output_size)`` float + ``(B,)``."""
        ids, lens = self.unit_ids(input, input_lengths)
        if self.embed is None:
            return ids.unsqueeze(-1).float(), lens
        valid = ids >= 0
        out = self.embed(ids.clamp(min=0)) * valid.unsqueeze(-1).to(self.embed.weight.dtype)
        return out, lens

    def units(self, wav: Union[np.ndarray, torch.Tensor]) -> List[int]:
        """One utterance ``(L,)`` -> unit ids (de-duplicated when ``dedup``)."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not torch.is_tensor(wav) else wav)
        x = x.to(self.centroids.device)
        ids, lens = self.unit_ids(x[None], torch.tensor([x.numel()], device=x.device))
        return ids[0, : int(lens[0])].tolist()
