"""K-means over frame features: the codebook of discrete speech units (arXiv 2406.09618).

Fitted with ``faiss.Kmeans`` (seeded), applied with an exact ``faiss.IndexFlatL2`` search.
Saved as a directory::

    <dir>/kmeans.safetensors   {"centroids": float32 (K, D)}
    <dir>/kmeans.json          num_units, dim, feature spec, seed, frames used, objective, ...

written atomically (the whole directory appears at once, or the old one stays).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import faiss
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from espnet_llm_plugin.fileio.atomic import atomic_dir

logger = logging.getLogger(__name__)

CENTROIDS_FILE = "kmeans.safetensors"
META_FILE = "kmeans.json"
FORMAT_VERSION = 1


class KMeansError(ValueError):
    """A k-means directory or input that cannot be used (the message names the file/key)."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). ``(N, D)`` float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _as_frames(x: np.ndarray, dim: Optional[int], what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise KMeansError(f"{what}: expected frames (N, D), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise KMeansError(f"{what}: feature dim {x.shape[1]} != k-means dim {dim}")
    if not np.isfinite(x).all():
        raise KMeansError(f"{what}: features contain NaN or infinite values")
    return x


@dataclass
class KMeansModel:
    """Centroids ``(K, D)`` + the metadata needed to reproduce the units.

    Attributes:
        centroids: float32 ``(K, D)``.
        feature_spec: the extractor spec (see ``unit_features.build_feature_extractor``).
        normalize: L2-normalise features before assignment (and before fitting).
        meta: training facts (seed, frames used, objective, ...), saved to ``kmeans.json``.
    """

    centroids: np.ndarray
    feature_spec: Dict[str, Any] = field(default_factory=dict)
    normalize: bool = False
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self._index = None

    @property
    def num_units(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    # -------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        frames: np.ndarray,
        num_units: int,
        n_iter: int = 20,
        seed: int = 0,
        max_points_per_centroid: int = 256,
        normalize: bool = False,
        feature_spec: Optional[Dict[str, Any]] = None,
        n_redo: int = 1,
    ) -> "KMeansModel":
        """Fit on ``frames`` ``(N, D)``.

        faiss samples at most ``num_units * max_points_per_centroid`` of the frames (seeded);
        the objective is the sum of squared distances over those, after the last iteration.
        """
        x = _as_frames(frames, None, "k-means training frames")
        if num_units < 1:
            raise KMeansError(f"num_units must be >= 1, got {num_units}")
        if x.shape[0] < num_units:
            raise KMeansError(
                f"k-means: {x.shape[0]} frames are fewer than num_units={num_units}; use more data or fewer units"
            )
        if normalize:
            x = l2_normalize(x)
        used = min(x.shape[0], num_units * max_points_per_centroid)
        if x.shape[0] < 39 * num_units:
            logger.warning(
                "k-means: %d frames for %d units (< 39 per centroid); clusters will be noisy",
                x.shape[0],
                num_units,
            )
        start = time.perf_counter()
        km = faiss.Kmeans(
            x.shape[1],
            num_units,
            niter=n_iter,
            seed=seed,
            nredo=n_redo,
            max_points_per_centroid=max_points_per_centroid,
            verbose=False,
        )
        km.train(x)
        seconds = time.perf_counter() - start
        objective = float(km.obj[-1]) if len(km.obj) else float("nan")
        meta = {
            "seed": int(seed),
            "n_iter": int(n_iter),
            "n_redo": int(n_redo),
            "max_points_per_centroid": int(max_points_per_centroid),
            "frames_given": int(x.shape[0]),
            "frames_used": int(used),
            "objective": objective,
            "mean_sq_distance": objective / max(used, 1),
            "train_seconds": round(seconds, 3),
            "faiss_version": faiss.__version__,
        }
        logger.info(
            "k-means: K=%d D=%d on %d frames (%d used), objective %.4g, %.1f s",
            num_units,
            x.shape[1],
            x.shape[0],
            used,
            objective,
            seconds,
        )
        return cls(centroids=km.centroids, feature_spec=dict(feature_spec or {}), normalize=normalize, meta=meta)

    # -------------------------------------------------------------------------- assignment
    def _flat_index(self):
        if self._index is None:
            index = faiss.IndexFlatL2(self.dim)
            index.add(self.centroids)
            self._index = index
        return self._index

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Nearest centroid per frame: ``(T, D)`` -> ``(T,)`` int64 unit ids in ``[0, K)``."""
        x = _as_frames(frames, self.dim, "k-means input")
        if x.shape[0] == 0:
            return np.zeros((0,), dtype=np.int64)
        if self.normalize:
            x = l2_normalize(x)
        _, labels = self._flat_index().search(x, 1)
        return labels[:, 0].astype(np.int64)

    def distances(self, frames: np.ndarray) -> np.ndarray:
        """Squared L2 distance of each frame to its nearest centroid ``(T,)``."""
        x = _as_frames(frames, self.dim, "k-means input")
        if self.normalize:
            x = l2_normalize(x)
        d, _ = self._flat_index().search(x, 1)
        return d[:, 0]

    def check_dim(self, dim: int, where: str = "feature extractor") -> None:
        if int(dim) != self.dim:
            raise KMeansError(
                f"k-means dim {self.dim} does not match the {where}'s feature dim {dim}: the "
                f"k-means model was trained on other features ({self.feature_spec.get('type')})"
            )

    # -------------------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write ``kmeans.safetensors`` + ``kmeans.json`` into ``directory`` atomically."""
        directory = Path(directory)
        meta = {
            "format_version": FORMAT_VERSION,
            "num_units": self.num_units,
            "dim": self.dim,
            "normalize": bool(self.normalize),
            "feature": self.feature_spec,
            **{k: v for k, v in self.meta.items() if k not in ("num_units", "dim", "feature")},
        }
        with atomic_dir(directory) as tmp:
            save_file({"centroids": self.centroids}, str(tmp / CENTROIDS_FILE))
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, expected_dim: Optional[int] = None) -> "KMeansModel":
        """Read a directory written by :meth:`save`, checking it thoroughly.

        Raises:
            KMeansError: missing/corrupt files, shapes that disagree with ``kmeans.json``,
                non-finite centroids, or ``expected_dim`` different from the centroids' dim.
        """
        directory = Path(directory)
        meta_path, cent_path = directory / META_FILE, directory / CENTROIDS_FILE
        for p in (meta_path, cent_path):
            if not p.is_file():
                raise KMeansError(f"{p}: k-means file not found (run train_kmeans first)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise KMeansError(f"{meta_path}: not valid JSON ({e})") from e
        if not isinstance(meta, dict):
            raise KMeansError(f"{meta_path}: expected a JSON object")
        for key in ("num_units", "dim", "feature"):
            if key not in meta:
                raise KMeansError(f"{meta_path}: missing key '{key}'")
        try:
            with safe_open(str(cent_path), framework="np") as f:
                if "centroids" not in f.keys():
                    raise KMeansError(f"{cent_path}: no 'centroids' tensor")
                centroids = f.get_tensor("centroids")
        except KMeansError:
            raise
        except Exception as e:  # safetensors raises SafetensorError / OSError on bad files
            raise KMeansError(f"{cent_path}: unreadable safetensors file ({e})") from e
        if centroids.dtype != np.float32 or centroids.ndim != 2:
            raise KMeansError(f"{cent_path}: centroids must be float32 (K, D), got {centroids.dtype} {centroids.shape}")
        k, d = centroids.shape
        if k < 1 or d < 1:
            raise KMeansError(f"{cent_path}: empty centroid matrix {centroids.shape}")
        if meta["num_units"] != k or meta["dim"] != d:
            raise KMeansError(
                f"{meta_path}: says num_units={meta['num_units']}, dim={meta['dim']} but "
                f"{cent_path.name} holds ({k}, {d})"
            )
        if not np.isfinite(centroids).all():
            raise KMeansError(f"{cent_path}: centroids contain NaN or infinite values")
        rest = {
            k_: v for k_, v in meta.items() if k_ not in ("num_units", "dim", "feature", "normalize", "format_version")
        }
        model = cls(
            centroids=centroids,
            feature_spec=dict(meta["feature"]),
            normalize=bool(meta.get("normalize", False)),
            meta=rest,
        )
        if expected_dim is not None:
            model.check_dim(expected_dim)
        return model


class FrameSampler:
    """A uniform random sample of at most ``max_frames`` frames from a stream of utterances.

    Bottom-k sampling: every frame gets a seeded random key and the ``max_frames`` smallest keys
    are kept, so memory stays ``O(max_frames * D)`` however long the corpus is, and the sample
    does not depend on how the stream is chunked. ``max_frames=None`` keeps everything.
    """

    def __init__(self, max_frames: Optional[int], seed: int = 0):
        if max_frames is not None and max_frames < 1:
            raise KMeansError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self._rng = np.random.default_rng(seed)
        self._frames: list = []
        self._keys: list = []
        self._held = 0
        self.seen = 0

    def add(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        self.seen += frames.shape[0]
        self._frames.append(frames)
        self._keys.append(self._rng.random(frames.shape[0]))
        self._held += frames.shape[0]
        if self.max_frames is not None and self._held > 2 * self.max_frames:
            self._shrink()

    def _shrink(self) -> None:
        x, keys = np.concatenate(self._frames), np.concatenate(self._keys)
        if self.max_frames is not None and x.shape[0] > self.max_frames:
            keep = np.argpartition(keys, self.max_frames - 1)[: self.max_frames]
            keep.sort()  # stream order: reproducible whatever argpartition's order
            x, keys = x[keep], keys[keep]
        self._frames, self._keys, self._held = [x], [keys], x.shape[0]

    def frames(self) -> np.ndarray:
        """The sample ``(N, D)`` float32."""
        if not self._frames:
            return np.zeros((0, 0), dtype=np.float32)
        self._shrink()
        return self._frames[0]
