"""n-best rescoring with a kNN-LM: each hypothesis's log-probability under the kNN-LM of a
text-only datastore (Khandelwal et al. 2020), in place of a plain LM's.

A general LM cannot prefer a name it has never seen over a misrecognition of it; a memory of
in-domain text can. The datastore's key encoder is the LM: it frames the hypothesis as the
memory was framed (the datastore's build info), gives the base log-probs and the queries, and
each token's probability is interpolated with the distribution of its ``k`` nearest memory
entries exactly as :class:`~espnet_llm_plugin.retrieval.knnlm_scorer.KnnLmScorer` does in beam
search (:func:`~espnet_llm_plugin.retrieval.knnlm_perplexity.text_logprobs`). The scores are
totals, like :class:`~espnet_llm_plugin.rescoring.lm_scorer.LmScorer`'s without length
normalisation, so the first pass is combined with them like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import yaml

from espnet_llm_plugin.rescoring.nbest import NBest, check_finite
from espnet_llm_plugin.retrieval.datastore import FaissDatastore, read_manifest
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
from espnet_llm_plugin.retrieval.knnlm_perplexity import text_logprobs
from espnet_llm_plugin.retrieval.knnlm_settings import KnnLmSettings, resolve_knnlm_settings

logger = logging.getLogger(__name__)


def _text_only_build(datastore_dir: Union[str, Path]) -> tuple:
    """``(manifest, build info)`` of a text-only datastore; a multi-modal one is refused."""
    manifest = read_manifest(datastore_dir)
    build = (manifest.get("info") or {}).get("build") or {}
    if build.get("memory_units"):
        raise ValueError(
            f"kNN-LM datastore {datastore_dir} is multi-modal (speech-span keys); n-best rescoring "
            "takes a text-only memory (build it from --memory_text)"
        )
    return manifest, build


def knnlm_identity(
    datastore_dir: Union[str, Path], overrides: Optional[Mapping[str, Any]] = None, lm_path: Optional[str] = None
) -> Dict[str, Any]:
    """What weights tuned with this kNN-LM depend on besides the LM: the datastore and the
    query-time settings (read without loading any model).

    Raises:
        ValueError: a multi-modal datastore, or ``lm_path`` (when given) that is not the
            datastore's key encoder (the kNN-LM's LM is its key encoder).
    """
    manifest, _ = _text_only_build(datastore_dir)
    key_path = manifest["key_encoder"].get("model_path") or ""
    if lm_path is not None and Path(key_path).resolve() != Path(lm_path).resolve():
        raise ValueError(
            f"--lm_path {lm_path} is not the key encoder of --knnlm_datastore {datastore_dir} "
            f"({key_path}): the kNN-LM's LM is its key encoder"
        )
    settings = resolve_knnlm_settings(overrides, key_path, "rescore_nbest --knnlm_*")
    query = {k: v for k, v in settings.to_dict().items() if k not in ("window", "stride")}
    return {"datastore": str(datastore_dir), "count": int(manifest.get("count", -1)), **query}


def tuned_lambda(weights_config: Union[str, Path]) -> Optional[float]:
    """The kNN-LM ``lambda`` a weights YAML was tuned with (``rescore_nbest --tune true
    --knnlm_lambdas``), so applying the weights uses it too; None: no file, or no kNN-LM in it."""
    path = Path(weights_config)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None  # CombinationWeights.load names the broken file
    knn = data.get("knnlm") if isinstance(data, dict) else None
    lam = knn.get("lambda") if isinstance(knn, dict) else None
    return float(lam) if isinstance(lam, (int, float)) and not isinstance(lam, bool) else None


@dataclass
class KnnLmNbestScorer:
    """The kNN-LM of one datastore as an n-best scorer.

    Attributes:
        key_encoder: the datastore's key encoder (LM and query model).
        datastore: the loaded datastore (its key-encoder identity checked).
        settings: ``k``, ``lam``, ``temperature`` (and its unit) in use.
    """

    key_encoder: KeyEncoder
    datastore: FaissDatastore
    settings: KnnLmSettings

    @classmethod
    def from_datastore(
        cls,
        datastore_dir: Union[str, Path],
        overrides: Optional[Mapping[str, Any]] = None,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 16,
    ) -> "KnnLmNbestScorer":
        """Load ``datastore_dir`` and its key encoder (the manifest's ``model_path``, relative
        to where the datastore was built); ``overrides``: ``lambda``/``k``/``temperature``/
        ``temperature_unit`` over the key encoder's ``llm_usage.json`` and the library defaults.
        """
        manifest, build = _text_only_build(datastore_dir)
        ident = manifest["key_encoder"]
        key_path = ident.get("model_path")
        if not key_path or not Path(key_path).is_dir():
            raise ValueError(
                f"kNN-LM datastore {datastore_dir}: its key encoder {key_path!r} is not a directory "
                "here (run from where the datastore was built)"
            )
        settings = resolve_knnlm_settings(overrides, key_path, "rescore_nbest --knnlm_*")
        encoder = KeyEncoder(
            key_path,
            layer=int(ident.get("layer", -1)),
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            text_form=build.get("text_form"),
            framing=build.get("framing"),
        )
        expect = {k: v for k, v in encoder.identity().items() if k != "model_path"}
        datastore = FaissDatastore.load(datastore_dir, expect=expect)
        logger.info(
            "kNN-LM: %d entries of %s, key encoder %s, k %d, lambda %g, temperature %g (%s)",
            datastore.count,
            datastore_dir,
            key_path,
            settings.k,
            settings.lam,
            settings.temperature,
            settings.temperature_unit,
        )
        return cls(encoder, datastore, settings)

    @property
    def temperature(self) -> float:
        """The softmax temperature over raw distances."""
        scale = self.datastore.distance_scale if self.settings.temperature_unit == "distance_scale" else 1.0
        return self.settings.temperature * scale

    def score_nbest(self, nbest: NBest, key: str = "lm", progress: bool = False) -> NBest:
        """Add ``scores[key]`` (kNN-LM total log-prob at the settings' ``lambda``) and
        ``scores[key + "_base"]`` (the key encoder's alone) to every hypothesis; a score that
        is not finite raises, naming the utterance."""
        return self.score_nbest_lambdas(nbest, [self.settings.lam], key, progress)[0]

    def score_nbest_lambdas(
        self, nbest: NBest, lams: Sequence[float], key: str = "lm", progress: bool = False
    ) -> List[NBest]:
        """:meth:`score_nbest` at each of ``lams`` (one forward pass and search for all)."""
        flat = [(u, i) for u, hyps in nbest.items() for i in range(len(hyps))]
        texts = [nbest[u][i].text for u, i in flat]
        base, knn = text_logprobs(
            texts, self.key_encoder, self.datastore, self.settings.k, lams, self.temperature, progress=progress
        )
        outs = []
        for row in knn:
            out: NBest = {u: [replace(h, scores=dict(h.scores)) for h in hyps] for u, hyps in nbest.items()}
            for (u, i), b, v in zip(flat, base, row):
                what = f"of utterance '{u}', hypothesis {out[u][i].text!r}"
                out[u][i].scores[key] = check_finite(float(v), f"kNN-LM score {what}")
                out[u][i].scores[key + "_base"] = float(b)
            outs.append(out)
        return outs
