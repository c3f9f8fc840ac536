"""kNN-LM datastore: keys (LM hidden states) -> values (next token ids), searched with faiss or
exact torch search, saved as a directory.

Directory layout (written with :func:`espnet_llm_plugin.fileio.atomic.atomic_dir`, so a
failed build or merge leaves the old directory untouched)::

    manifest.json   key-encoder identity, hidden size, tokenizer hash, metric, count, index,
                    distance scale (:func:`distance_scale`)
    keys.npy        (N, D) float32, or float16 with ``fp16``; kept for the torch backend and
                    for merging shards (an IVF/PQ index cannot give its keys back exactly)
    values.npy      (N,) int64 next-token ids
    index.faiss     the faiss index (``faiss.write_index``), built with ``index_factory``

Index strings are faiss ``index_factory`` strings: ``Flat`` (exact), ``IVF1024,PQ16``,
``HNSW32``, ``IVF256,SQ8``, ... Indexes that need training (IVF, PQ, SQ) are trained on the
keys of the first :meth:`FaissDatastore.add`. With ``fp16`` a ``Flat`` index becomes
``SQfp16`` (keys stored as float16 inside faiss, too).

Distance scale: kNN-LM temperatures are given in units of the datastore's
:func:`distance_scale` (the median squared distance between two random keys), so one
temperature fits LMs whose hidden states differ in magnitude by orders (SmolLM2's last layer:
scale ~2,300; its layer 15: ~26,000; a tiny random test LM: ~10). It is computed at build time
and stored in the manifest; a datastore from before then computes it when loaded.

Ties: neighbours at equal distance (duplicate keys are common: every memory window starting
with the same tokens gives the same key) are ordered by key id, and the ``k`` returned are the
lowest ids among them, whatever the backend and however many queries share a search. Before,
torch's ``topk`` picked among ties by its kernel's internals and a matmul's rounding differed
with the number of queries, so a query searched alone and in a batch got different neighbours,
and BeamSearch and BatchBeamSearch different hypotheses. Distances within a rounding tolerance
(:data:`TIE_TOLERANCE`) count as tied. A search asks its backend for ``k + 1`` neighbours and,
where a tie crosses the ``k``-th place, for more (up to :data:`MAX_TIE_FETCH`).

Key-encoder fingerprint: the identity in the manifest holds ``weights_sha256``
(:func:`~espnet_llm_plugin.retrieval.key_encoder.weights_fingerprint`, the hash of the key
encoder's weight files); :meth:`FaissDatastore.load` refuses a query model with other weights
(another checkpoint of the same config gives keys from another space). A datastore written
before the fingerprint was recorded loads with a warning.

Sharded builds: each shard is a complete datastore directory (any index); :func:`merge_datastores`
concatenates their keys and values in shard order and builds the index once, so the merged
datastore equals a single build over the same corpus.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import faiss
import numpy as np
import torch

from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text
from espnet_llm_plugin.retrieval.search_backend import SearchBackend, check_metric
from espnet_llm_plugin.retrieval.torch_search import TorchExactSearch

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MANIFEST, INDEX, KEYS, VALUES = "manifest.json", "index.faiss", "keys.npy", "values.npy"
FORMAT = "espnet_llm_plugin.knnlm_datastore"
VERSION = 1
BACKENDS = ("faiss", "torch")
# identity fields a datastore must match at load time, when the caller states them
CHECKED_FIELDS = ("tokenizer_hash", "hidden_size", "config_hash", "layer", "vocab_size", "weights_sha256")
FINGERPRINT = "weights_sha256"  # the key encoder's weight files (key_encoder.weights_fingerprint)
# at most this many neighbours are fetched to resolve a tie across the k-th place; beyond it
# the backend's own choice among still-tied keys stands (faiss' exact search: the lowest ids)
MAX_TIE_FETCH = 8192
# distances this close (relative to |query|^2 + |distance|) are ties: float32 rounding of the
# |q|^2 - 2 q.k + |k|^2 a search computes, and of half-precision keys on a GPU
TIE_TOLERANCE, HALF_TIE_TOLERANCE = 1e-5, 1e-2


class DatastoreError(ValueError):
    """A datastore directory is missing, corrupt, or does not fit the model using it."""


class FaissSearch(SearchBackend):
    """A faiss index as :class:`SearchBackend` (CPU faiss; see ``TorchExactSearch`` for GPUs)."""

    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        index_string: str = "Flat",
        index: Any = None,
        max_train: int = 200_000,
        seed: int = 0,
    ):
        self.dim = int(dim)
        self.metric = check_metric(metric)
        self.index_string = index_string
        self.max_train, self.seed = int(max_train), int(seed)
        if index is None:
            faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
            try:
                index = faiss.index_factory(self.dim, index_string, faiss_metric)
            except RuntimeError as e:
                raise ValueError(f"faiss index_factory cannot build {index_string!r} (dim {dim}): {e}") from e
        self.index = index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, keys: np.ndarray) -> None:
        if self.is_trained:
            return
        _skip_polysemous_training(self.index)
        if len(keys) > self.max_train:  # a seeded sample: training cost grows with the keys
            pick = np.random.default_rng(self.seed).choice(len(keys), self.max_train, replace=False)
            keys = keys[np.sort(pick)]
        try:
            self.index.train(np.ascontiguousarray(keys, dtype=np.float32))
        except RuntimeError as e:
            raise ValueError(
                f"training faiss index {self.index_string!r} on {len(keys)} keys failed (too few "
                f"keys for its clusters/codebooks? use a smaller IVF/PQ or 'Flat'): {e}"
            ) from e

    def add(self, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}), got {tuple(keys.shape)}")
        self.train(keys)
        self.index.add(keys)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        q = self.check_queries(queries, k)
        scores, ids = self.index.search(q, k)
        return scores, ids.astype(np.int64, copy=False)

    def set_search_params(self, params: Optional[str]) -> None:
        """Set faiss search-time parameters, e.g. ``"nprobe=16"`` (IVF: lists visited per query;
        faiss' default is 1) or ``"efSearch=64"`` (HNSW: search breadth; default 16), as
        ``faiss.ParameterSpace`` parses them (comma-separated ``name=value``).

        Raises:
            ValueError: a parameter this index does not have.
        """
        if not params:
            return

        try:
            faiss.ParameterSpace().set_index_parameters(self.index, params)
        except RuntimeError as e:
            raise ValueError(
                f"faiss index {self.index_string!r} does not take search parameters {params!r}: {e}"
            ) from e

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def read(cls, path: Path, metric: str, index_string: str) -> "FaissSearch":
        try:
            index = faiss.read_index(str(path))
        except Exception as e:  # faiss raises RuntimeError with a C++ message
            raise DatastoreError(f"datastore index file {path} is corrupt or unreadable: {e}") from e
        return cls(index.d, metric, index_string, index=index)


def _skip_polysemous_training(index: Any) -> None:
    """Turn off faiss' polysemous training of PQ codes (``index_factory`` turns it on for
    ``IVF...,PQm``): a simulated-annealing search for a permutation of each sub-quantizer's
    256 codes, ~3 s per sub-quantizer on one core (minutes for ``PQ32``) whatever the number of
    keys. It only serves polysemous filtering (``polysemous_ht``), which is never enabled here;
    permuting codes changes no distance, so search results stay the same."""
    candidates = [index]
    try:
        candidates.append(faiss.extract_index_ivf(index))
    except RuntimeError:  # not an IVF index
        pass
    for c in candidates:
        c = faiss.downcast_index(c)
        if getattr(c, "do_polysemous_training", False) and not getattr(c, "polysemous_ht", 0):
            c.do_polysemous_training = False


SCALE_PAIRS = 10_000  # random key pairs behind the distance scale (a seeded sample)


def distance_scale(keys: np.ndarray, metric: str = "l2", pairs: int = SCALE_PAIRS, seed: int = 0) -> float:
    """The datastore's distance unit: the median over ``pairs`` seeded random pairs of distinct
    keys ``(a, b)`` of ``||a - b||^2`` (``l2``) or of ``|<a, a> - <a, b>|`` (``ip``: how much
    less similar a random key is than the key itself).

    Why random pairs: the best kNN-LM temperature measured on SmolLM2 moved with the hidden
    states' magnitude (layers -1 / 15 / 24: best temperature 100 / 2,000 / 10,000 in raw
    squared distances) but not with the memory's size (150 or 300 sentences: same best
    temperature); the random-pair distance does the same, while nearest-neighbour distances
    shrink as the memory grows. Returns 1.0 for fewer than two keys or a zero median (all keys
    equal), leaving temperatures in raw units.

    Args:
        keys: ``(N, D)``.
    """
    n = len(keys)
    if n < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n  # b != a
    ka, kb = keys[a].astype(np.float64), keys[b].astype(np.float64)
    if check_metric(metric) == "l2":
        d = ((ka - kb) ** 2).sum(1)
    else:
        d = np.abs((ka * ka).sum(1) - (ka * kb).sum(1))
    scale = float(np.median(d))
    return scale if scale > 0 and np.isfinite(scale) else 1.0


def _nearest_by_score_then_id(
    search: Callable[[int], Tuple["torch.Tensor", "torch.Tensor"]],
    k: int,
    ntotal: int,
    metric: str,
    q_sq: "torch.Tensor",
    rel_tol: float,
) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """The ``k`` nearest neighbours ``(scores (N, k), ids (N, k))`` with ties resolved by id (see
    the module docstring).

    Scores within ``rel_tol * (|q|^2 + |score|)`` of their neighbour in the sorted list form one
    tie block (a search's own rounding differs with the key's position in a matmul and with
    the number of queries, so duplicate keys need not come out bit-equal); blocks keep their
    order, ids order a block. A block crossing the ``k``-th place is fetched whole (up to
    :data:`MAX_TIE_FETCH` neighbours), so the ``k`` kept are its lowest ids.

    Args:
        search: ``fetch -> (scores (N, fetch), ids (N, fetch))`` from a backend, best first.
        ntotal: number of stored keys.
        q_sq: ``(N,)`` squared query norms (the scale of a distance's rounding error).
    """
    fetch = k if ntotal <= k else k + 1  # one more: does a tie cross the k-th place?
    while True:
        scores, ids = search(fetch)
        missing = ids < 0
        key = (scores if metric == "l2" else -scores).float().masked_fill(missing, float("inf"))
        tol = rel_tol * (q_sq.to(key.device).float().unsqueeze(1) + key[:, :1].abs().clamp_max(3e38))
        gap = key[:, 1:] - key[:, :-1]
        new_block = missing[:, 1:] | ~(gap <= tol)  # a missing neighbour is never tied
        block = torch.cat([torch.zeros_like(new_block[:, :1]), new_block], dim=1).long().cumsum(1)
        if fetch <= k or fetch >= min(ntotal, MAX_TIE_FETCH):
            break
        crossing = ~missing[:, -1] & (block[:, -1] == block[:, k - 1])
        if not bool(crossing.any()):
            break
        fetch = min(2 * fetch, ntotal, max(MAX_TIE_FETCH, k + 1))
    # order by (block, id): sort by id, then stably by block; missing neighbours last
    id_key = ids.masked_fill(missing, torch.iinfo(torch.int64).max)
    order = id_key.sort(dim=1, stable=True).indices
    order = order.gather(1, block.gather(1, order).sort(dim=1, stable=True).indices)[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


def _effective_index_string(index: str, fp16: bool) -> str:
    return "SQfp16" if fp16 and index.strip() == "Flat" else index


class FaissDatastore:
    """Keys + values + a search backend, with a manifest describing the key encoder.

    Args:
        identity: key encoder identity (:func:`espnet_llm_plugin.retrieval.key_encoder.lm_identity`:
            model_path, config_hash, tokenizer_hash, vocab_size, hidden_size, layer, weights_sha256).
        index: faiss ``index_factory`` string.
        metric: ``l2`` or ``ip``.
        fp16: store keys as float16 (keys.npy and, for ``Flat``, the faiss index).
        backend: ``faiss`` or ``torch`` (exact search in torch, e.g. on a GPU).
        device: torch backend device.
        max_train: train IVF/PQ indexes on at most this many keys (a seeded sample).
    """

    def __init__(
        self,
        identity: Dict[str, Any],
        index: str = "Flat",
        metric: str = "l2",
        fp16: bool = False,
        backend: str = "faiss",
        device: str = "cpu",
        max_train: int = 200_000,
        _backend_obj: Optional[SearchBackend] = None,
    ):
        if "hidden_size" not in identity:
            raise ValueError("datastore identity needs 'hidden_size'")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.identity = dict(identity)
        self.dim = int(identity["hidden_size"])
        self.metric = check_metric(metric)
        self.fp16 = bool(fp16)
        self.index_string = _effective_index_string(index, fp16)
        self.backend_name = backend
        self.device = device
        self.max_train = max_train
        self._keys: List[np.ndarray] = []
        self._values: List[np.ndarray] = []
        self._keys_dir: Optional[Path] = None
        self._values_tensor: Any = None  # values as a tensor on the torch backend's device
        self._distance_scale: Optional[float] = None  # computed on first use, or from the manifest
        self.backend = _backend_obj if _backend_obj is not None else self._new_backend()

    def _new_backend(self) -> SearchBackend:
        if self.backend_name == "faiss":
            return FaissSearch(self.dim, self.metric, self.index_string, max_train=self.max_train)

        dtype = "float16" if self.fp16 and str(self.device).startswith("cuda") else None
        return TorchExactSearch(self.dim, self.metric, self.device, dtype=dtype)

    # ------------------------------------------------------------------ content
    @property
    def count(self) -> int:
        return int(sum(len(v) for v in self._values))

    @property
    def keys(self) -> np.ndarray:
        """All keys ``(N, D)`` (float16 with ``fp16``, else float32)."""
        if not self._keys and self._keys_dir is not None:  # loaded with the faiss backend
            self._keys = [_load_keys(self._keys_dir, read_manifest(self._keys_dir))]
        self._consolidate()
        return self._keys[0] if self._keys else np.zeros((0, self.dim), self._key_dtype())

    @property
    def values(self) -> np.ndarray:
        """All values ``(N,)`` int64."""
        self._consolidate()
        return self._values[0] if self._values else np.zeros((0,), np.int64)

    def _key_dtype(self):
        return np.float16 if self.fp16 else np.float32

    def _consolidate(self) -> None:
        if len(self._keys) > 1:
            self._keys = [np.concatenate(self._keys)]
            self._values = [np.concatenate(self._values)]

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Append ``keys (N, D)`` with ``values (N,)``; trains the index on the first call."""
        keys = np.asarray(keys)
        values = np.asarray(values)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise DatastoreError(
                f"keys must have shape (N, {self.dim}) (the key encoder's hidden size), got {tuple(keys.shape)}"
            )
        if values.shape != (keys.shape[0],):
            raise DatastoreError(f"values must have shape ({keys.shape[0]},), got {tuple(values.shape)}")
        if len(values) and (
            values.min() < 0 or ("vocab_size" in self.identity and values.max() >= self.identity["vocab_size"])
        ):
            raise DatastoreError(f"values outside [0, vocab_size={self.identity.get('vocab_size')})")
        if len(keys) == 0:
            return
        if self._keys_dir is not None and not self._keys:
            self.keys  # noqa: B018  (read the stored keys before appending to them)
        stored = keys.astype(self._key_dtype(), copy=False)
        self._keys.append(stored)
        self._values.append(values.astype(np.int64, copy=False))
        self._values_tensor = None
        self._distance_scale = None  # new keys: recompute
        # the backend sees exactly what is stored (fp16-rounded keys when fp16)
        self.backend.add(stored.astype(np.float32, copy=False))

    @classmethod
    def build(cls, keys: np.ndarray, values: np.ndarray, identity: Dict[str, Any], **kwargs: Any) -> "FaissDatastore":
        """A datastore holding ``keys``/``values`` (kwargs as in the constructor)."""
        if len(keys) == 0:
            raise DatastoreError("no keys to build a datastore from (empty memory corpus?)")
        ds = cls(identity, **kwargs)
        ds.add(keys, values)
        return ds

    @property
    def distance_scale(self) -> float:
        """:func:`distance_scale` of the keys (from the manifest when it has it)."""
        if self._distance_scale is None:
            if not self._keys and self._keys_dir is not None:
                # a datastore written before the scale was recorded: sample its keys from a
                # memory map instead of loading (and keeping) every key beside the faiss index
                keys = np.load(self._keys_dir / KEYS, mmap_mode="r", allow_pickle=False)
            else:
                keys = self.keys
            self._distance_scale = distance_scale(keys, self.metric)
        return self._distance_scale

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``queries (N, D) -> (scores (N, k), values (N, k))``; value ``-1`` = no neighbour.

        Scores are squared L2 distances (``l2``) or inner products (``ip``).
        """
        if self.count == 0:
            raise DatastoreError("search in an empty datastore")

        def fetch(n: int) -> Tuple[torch.Tensor, torch.Tensor]:
            scores, ids = self.backend.search(queries, n)
            return torch.from_numpy(np.asarray(scores)), torch.from_numpy(np.asarray(ids, dtype=np.int64))

        q_sq = torch.from_numpy(np.square(np.asarray(queries, dtype=np.float32)).sum(-1).reshape(-1))
        scores_t, ids_t = _nearest_by_score_then_id(
            fetch, k, self.backend.ntotal, self.metric, q_sq, self._tie_tolerance()
        )
        scores, ids = scores_t.numpy(), ids_t.numpy()
        vals = self.values
        out = np.where(ids >= 0, vals[np.clip(ids, 0, None)], -1)
        return scores, out

    def search_tensor(self, queries: "torch.Tensor", k: int) -> Tuple["torch.Tensor", "torch.Tensor"]:
        """:meth:`search` for torch queries ``(N, D)``: ``(scores (N, k) float32, values (N, k)
        int64)`` tensors. The exact torch backend searches where its keys are and returns
        tensors there (a GPU query never goes through host memory); faiss searches on the CPU.
        """
        if self.count == 0:
            raise DatastoreError("search in an empty datastore")
        search_tensor = getattr(self.backend, "search_tensor", None)
        if search_tensor is None:
            scores, values = self.search(queries.detach().float().cpu().numpy(), k)
            return torch.from_numpy(scores), torch.from_numpy(values)
        if queries.dim() != 2 or queries.size(1) != self.dim:
            raise ValueError(f"queries must have shape (N, {self.dim}), got {tuple(queries.shape)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = queries.detach()
        scores, ids = _nearest_by_score_then_id(
            lambda n: search_tensor(q, n),
            k,
            self.backend.ntotal,
            self.metric,
            q.float().pow(2).sum(1),
            self._tie_tolerance(),
        )
        if self._values_tensor is None or self._values_tensor.device != ids.device:
            self._values_tensor = torch.from_numpy(self.values).to(ids.device)
        return scores, torch.where(ids >= 0, self._values_tensor[ids.clamp_min(0)], -1)

    def _tie_tolerance(self) -> float:
        """Relative width of a tie: float32 rounding, or a half-precision search's (torch on a GPU)."""
        half = getattr(self.backend, "dtype", torch.float32) in (torch.float16, torch.bfloat16)
        return HALF_TIE_TOLERANCE if half else TIE_TOLERANCE

    # ------------------------------------------------------------------ files
    def manifest(self, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        m = {
            "format": FORMAT,
            "version": VERSION,
            "key_encoder": self.identity,
            "hidden_size": self.dim,
            "tokenizer_hash": self.identity.get("tokenizer_hash"),
            "metric": self.metric,
            "count": self.count,
            "index": self.index_string,
            "key_dtype": "float16" if self.fp16 else "float32",
            "distance_scale": self.distance_scale,
        }
        if extra:
            m["info"] = extra
        return m

    def save(self, path: Union[str, Path], extra: Optional[Dict[str, Any]] = None) -> None:
        """Write the datastore directory atomically (``extra``: free-form build info)."""

        if self.count == 0:
            raise DatastoreError(f"refusing to save an empty datastore to {path}")
        with atomic_dir(path) as tmp:
            np.save(tmp / KEYS, self.keys, allow_pickle=False)
            np.save(tmp / VALUES, self.values, allow_pickle=False)
            if isinstance(self.backend, FaissSearch):
                self.backend.write(tmp / INDEX)
            else:  # a torch-backed datastore still ships a faiss index for CPU users
                fs = FaissSearch(self.dim, self.metric, self.index_string, max_train=self.max_train)
                fs.add(self.keys.astype(np.float32))
                fs.write(tmp / INDEX)
            atomic_write_text(tmp / MANIFEST, json.dumps(self.manifest(extra), indent=1) + "\n")
        logger.info("wrote datastore %s (%d entries, index %s)", path, self.count, self.index_string)

    @classmethod
    def load(
        cls,
        path: Union[str, Path],
        expect: Optional[Dict[str, Any]] = None,
        backend: str = "faiss",
        device: str = "cpu",
        search_params: Optional[str] = None,
    ) -> "FaissDatastore":
        """Load a datastore directory and check it fits the caller.

        Args:
            expect: identity fields the datastore must have (any of ``tokenizer_hash``,
                ``hidden_size``, ``config_hash``, ``layer``, ``vocab_size``, ``weights_sha256``),
                e.g. the scorer LM's. A datastore without ``weights_sha256`` (built before it was
                recorded) loads with a warning.
            backend: ``faiss`` (read ``index.faiss``) or ``torch`` (exact search over ``keys.npy``).
            search_params: faiss search-time parameters (``FaissSearch.set_search_params``),
                e.g. ``"nprobe=16"`` for an IVF index; ignored by the exact torch backend.

        Raises:
            DatastoreError: missing files, a corrupt index, counts/dims that disagree, or a
                mismatch with ``expect`` (another tokenizer, another hidden size, ...).
        """
        p = Path(path)
        manifest = read_manifest(p)
        ident = manifest["key_encoder"]
        for name, want in (expect or {}).items():
            if name not in CHECKED_FIELDS or want is None:
                continue
            have = ident.get(name, manifest.get(name))
            if name == FINGERPRINT:
                _check_fingerprint(p, ident, have, want)
                continue
            if have != want:
                what = {
                    "tokenizer_hash": "was built with another tokenizer (vocabulary hash differs)",
                    "hidden_size": f"has keys of width {have}, the query model's hidden size is {want}",
                    "config_hash": "was built with another model (config hash differs)",
                    "layer": f"has keys from layer {have}, the query layer is {want}",
                    "vocab_size": f"has vocab size {have}, the scorer's is {want}",
                }[name]
                raise DatastoreError(
                    f"datastore {p} {what}: it was built by {ident.get('model_path')}; rebuild it "
                    f"with the decoding LM as key encoder"
                )
        try:
            values = np.load(p / VALUES, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatastoreError(f"datastore values file {p / VALUES} is missing or corrupt: {e}") from e
        if values.shape != (manifest["count"],):
            raise DatastoreError(f"{p / VALUES} holds {values.shape} values, manifest says {manifest['count']}")
        fp16 = manifest.get("key_dtype") == "float16"
        dim = int(manifest["hidden_size"])
        if backend == "faiss":
            if not (p / INDEX).is_file():
                raise DatastoreError(f"datastore index file {p / INDEX} is missing")
            fs = FaissSearch.read(p / INDEX, manifest["metric"], manifest["index"])
            fs.set_search_params(search_params)
            if fs.dim != dim or fs.ntotal != manifest["count"]:
                raise DatastoreError(
                    f"datastore index {p / INDEX} has dim {fs.dim} and {fs.ntotal} entries, manifest "
                    f"says dim {dim} and {manifest['count']}: the index does not belong to this datastore"
                )
            ds = cls(ident, manifest["index"], manifest["metric"], fp16=fp16, backend="faiss", _backend_obj=fs)
            ds._values = [values.astype(np.int64, copy=False)]
            ds._keys_dir = p  # keys.npy is read only when asked for (not needed to search)
        else:
            keys = _load_keys(p, manifest)
            ds = cls(ident, manifest["index"], manifest["metric"], fp16=fp16, backend=backend, device=device)
            ds.add(keys, values)
        if manifest.get("distance_scale") is not None:  # else computed from keys.npy when needed
            ds._distance_scale = float(manifest["distance_scale"])
        return ds


def _check_fingerprint(p: Path, ident: Dict[str, Any], have: Optional[str], want: str) -> None:
    """Refuse a datastore whose key encoder had other weights than the query model (``want``)."""
    if have is None:  # written before fingerprints were recorded: cannot tell, do not break it
        logger.warning(
            "datastore %s records no key-encoder weights fingerprint (built before they were "
            "recorded): cannot check that its keys come from the query model's weights (sha256 %s); "
            "rebuild it to have the check",
            p,
            want,
        )
        return
    if have != want:
        raise DatastoreError(
            f"datastore {p} was built by a key encoder with weights sha256 {have} "
            f"({ident.get('model_path')}), but the query model's weights have sha256 {want}: its "
            f"keys live in another model's hidden space (same config, other weights); rebuild it "
            f"with the decoding LM as key encoder"
        )


def _load_keys(p: Path, manifest: Dict[str, Any]) -> np.ndarray:
    try:
        keys = np.load(p / KEYS, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatastoreError(f"datastore keys file {p / KEYS} is missing or corrupt: {e}") from e
    if keys.shape != (manifest["count"], manifest["hidden_size"]):
        raise DatastoreError(
            f"{p / KEYS} has shape {keys.shape}, manifest says ({manifest['count']}, {manifest['hidden_size']})"
        )
    return keys


def read_manifest(path: Union[str, Path]) -> Dict[str, Any]:
    """The manifest of datastore directory ``path`` (checked for the required fields)."""
    p = Path(path)
    if not p.is_dir():
        raise DatastoreError(f"datastore directory {p} not found")
    try:
        m = json.loads((p / MANIFEST).read_text())
    except FileNotFoundError as e:
        raise DatastoreError(f"{p} is not a datastore: no {MANIFEST}") from e
    except json.JSONDecodeError as e:
        raise DatastoreError(f"datastore manifest {p / MANIFEST} is not valid JSON: {e}") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DatastoreError(f"{p / MANIFEST} is not a kNN-LM datastore manifest (format {FORMAT})")
    missing = [f for f in ("key_encoder", "hidden_size", "metric", "count", "index") if f not in m]
    if missing:
        raise DatastoreError(f"datastore manifest {p / MANIFEST} lacks {missing}")
    return m


def merge_datastores(
    shard_dirs: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    index: Optional[str] = None,
    extra: Optional[Dict[str, Any]] = None,
    max_train: int = 200_000,
) -> FaissDatastore:
    """Concatenate shard datastores (in the given order) and build one index over all keys.

    Args:
        index: index string of the merged datastore (default: the shards').

    Raises:
        DatastoreError: no shards, or shards built with different key encoders/metrics/dtypes.
    """
    if not shard_dirs:
        raise DatastoreError("merge: no shard directories given")
    manifests = [read_manifest(d) for d in shard_dirs]
    first = manifests[0]
    for d, m in zip(shard_dirs, manifests):
        for field in ("key_encoder", "metric", "key_dtype", "hidden_size"):
            if m.get(field) != first.get(field):
                raise DatastoreError(
                    f"merge: shard {d} differs from {shard_dirs[0]} in {field} "
                    f"({m.get(field)!r} vs {first.get(field)!r})"
                )
    keys = np.concatenate([_load_keys(Path(d), m) for d, m in zip(shard_dirs, manifests)])
    values = np.concatenate([np.load(Path(d) / VALUES, allow_pickle=False) for d in shard_dirs])
    fp16 = first.get("key_dtype") == "float16"
    index = index or first["index"]
    ds = FaissDatastore.build(
        keys, values, first["key_encoder"], index=index, metric=first["metric"], fp16=fp16, max_train=max_train
    )
    info = dict(extra or {})
    info["merged_from"] = [str(d) for d in shard_dirs]
    ds.save(out_dir, info)
    return ds
