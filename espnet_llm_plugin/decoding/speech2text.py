"""ESPnet's ``Speech2Text`` plus our decoding-time scorers.

ESPnet's ``Speech2Text`` builds its beam search in ``__init__`` and takes no extra scorers.
``Speech2TextWithScorers`` adds them afterwards to the beam search's ``scorers``,
``full_scorers`` and ``weights``. All of ours are batch scorers, so ESPnet's choice of
``BatchBeamSearch`` stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Dict

from espnet_llm_plugin.quiet import quiet_espnet_import

with quiet_espnet_import():
    from espnet2.bin.asr_inference import Speech2Text

from espnet_llm_plugin.decoding.no_repeat_ngram import NoRepeatNgramScorer

logger = logging.getLogger(__name__)


KNNLM_QUERIES = ("lm", "decoder")
KNNLM_BACKENDS = ("faiss", "torch")


@dataclass
class ExtraDecodingOptions:
    """Options that ESPnet's inference does not have (YAML keys of the decode config).

    Shallow fusion with any HF causal LM (its tokenizer = the ASR token list):
    ``hf_lm_path`` (local HF dir), ``hf_lm_weight`` (0: off).

    kNN-LM (arXiv 2406.09618), on when ``knnlm_datastore`` is set:
    ``knnlm_datastore`` (dir from ``build_datastore``), ``knnlm_query`` (``lm``: a separate HF
    LM, ``knnlm_lm_path`` or else the datastore's key encoder, gives log-probs and queries;
    ``decoder``: the ASR model's own LlmDecoder is the base LM and its last hidden state the
    query, the paper's setting; the decoder's scores are then replaced by the kNN-LM's),
    ``knnlm_weight`` (beam-search weight of the ``knnlm`` scorer, ``lm`` mode),
    ``knnlm_lambda``, ``knnlm_k``, ``knnlm_temperature``, ``knnlm_backend`` (``faiss|torch``).
    """

    no_repeat_ngram_size: int = 0  # 0: off
    hf_lm_path: str = ""
    hf_lm_weight: float = 0.0
    knnlm_datastore: str = ""
    knnlm_query: str = "lm"
    knnlm_lm_path: str = ""
    knnlm_weight: float = 0.3
    knnlm_lambda: float = 0.25
    knnlm_k: int = 16
    knnlm_temperature: float = 1.0
    knnlm_backend: str = "faiss"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, _TYPES[f.type]):
                if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                    setattr(self, f.name, float(value))
                    continue
                raise ValueError(f"decoding option {f.name} must be of type {f.type}, got {value!r}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.hf_lm_weight != 0 and not self.hf_lm_path:
            raise ValueError("hf_lm_weight is set but hf_lm_path is empty")
        if self.knnlm_query not in KNNLM_QUERIES:
            raise ValueError(f"knnlm_query must be one of {KNNLM_QUERIES}, got {self.knnlm_query!r}")
        if self.knnlm_backend not in KNNLM_BACKENDS:
            raise ValueError(f"knnlm_backend must be one of {KNNLM_BACKENDS}, got {self.knnlm_backend!r}")
        if not 0.0 <= self.knnlm_lambda <= 1.0:
            raise ValueError(f"knnlm_lambda must be in [0, 1], got {self.knnlm_lambda}")
        if self.knnlm_k < 1 or self.knnlm_temperature <= 0:
            raise ValueError(
                f"need knnlm_k >= 1 and knnlm_temperature > 0, got {self.knnlm_k}, {self.knnlm_temperature}"
            )

    @classmethod
    def pop_from(cls, config: Dict[str, Any]) -> "ExtraDecodingOptions":
        """Take our keys out of a decode-config mapping (ESPnet would reject them)."""
        kwargs = {k: config.pop(k) for k in list(config) if k in cls.__dataclass_fields__}
        return cls(**kwargs)

    @classmethod
    def parse_value(cls, key: str, raw: str) -> Any:
        """A command-line string converted to the option's type (``--knnlm_k 8`` -> 8)."""
        kind = cls.__dataclass_fields__[key].type
        try:
            return _TYPES[kind](raw)
        except ValueError:
            raise ValueError(f"--{key} must be of type {kind}, got {raw!r}") from None


_TYPES = {"int": int, "float": float, "str": str}


class Speech2TextWithScorers(Speech2Text):
    """``Speech2Text(**espnet_kwargs)`` with ``extra`` scorers added to its beam search."""

    extra = ExtraDecodingOptions()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bs = self.beam_search
        if bs is None:
            return
        if self.extra.no_repeat_ngram_size > 0:
            scorer = NoRepeatNgramScorer(self.extra.no_repeat_ngram_size, bs.n_vocab)
            self.add_scorer("no_repeat_ngram", scorer, 1.0)
        token_list = list(self.asr_model.token_list)
        device = str(getattr(self, "device", "cpu"))
        if self.extra.hf_lm_path and self.extra.hf_lm_weight != 0:
            from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer

            lm = HfLmScorer(self.extra.hf_lm_path, token_list=token_list, device=device)
            self.add_scorer("hf_lm", lm, self.extra.hf_lm_weight)
        if self.extra.knnlm_datastore:
            self._add_knnlm(token_list, device)

    def _add_knnlm(self, token_list, device: str) -> None:
        """Build the kNN-LM scorer from the options (see :class:`ExtraDecodingOptions`)."""
        from espnet_llm_plugin.asr.hf_causal_lm import unwrap_peft
        from espnet_llm_plugin.retrieval.datastore import FaissDatastore, read_manifest
        from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer, check_token_list
        from espnet_llm_plugin.retrieval.key_encoder import lm_identity
        from espnet_llm_plugin.retrieval.knnlm_scorer import DecoderQueryTap, KnnLmScorer

        opts, bs = self.extra, self.beam_search
        manifest = read_manifest(opts.knnlm_datastore)
        ident = manifest["key_encoder"]
        if opts.knnlm_query == "lm":
            lm_path = opts.knnlm_lm_path or ident.get("model_path", "")
            base: Any = HfLmScorer(lm_path, token_list=token_list, layer=int(ident.get("layer", -1)), device=device)
            expect = base.identity()
        else:
            decoder = bs.scorers.get("decoder")
            if decoder is None or not hasattr(decoder, "llm") or not hasattr(decoder, "tokenizer"):
                raise ValueError(
                    "knnlm_query decoder needs an ASR model whose decoder is our LlmDecoder "
                    f"(decoder: llm); this model's is {type(decoder).__name__}"
                )
            check_token_list(token_list, decoder.tokenizer, decoder.llm_path)
            base = DecoderQueryTap(decoder)
            expect = lm_identity(decoder.llm_path, unwrap_peft(decoder.llm), decoder.tokenizer, -1)
            expect.pop("config_hash")  # the decoder's LLM may carry LoRA: same shape, other weights
        expect.pop("model_path")
        datastore = FaissDatastore.load(
            opts.knnlm_datastore, expect=expect, backend=opts.knnlm_backend, device=device
        )
        knn = KnnLmScorer(base, datastore, opts.knnlm_lambda, opts.knnlm_k, opts.knnlm_temperature)
        if opts.knnlm_query == "lm":
            self.add_scorer("knnlm", knn, opts.knnlm_weight)
        else:  # the decoder's scores become the interpolated ones, with the decoder's weight
            bs.scorers["decoder"] = knn
            bs.full_scorers["decoder"] = knn
            logger.info("decoder scores replaced by kNN-LM over %s", opts.knnlm_datastore)

    def add_scorer(self, name: str, scorer: Any, weight: float) -> None:
        bs = self.beam_search
        if name in bs.scorers:
            raise ValueError(f"a beam-search scorer named '{name}' exists already")
        bs.scorers[name] = scorer
        bs.full_scorers[name] = scorer
        bs.weights[name] = weight
        logger.info("added beam-search scorer %s (weight %s)", name, weight)


def speech2text_class(extra: ExtraDecodingOptions) -> type:
    """A ``Speech2TextWithScorers`` subclass bound to ``extra`` (ESPnet constructs the class
    itself, from keyword arguments it knows, so the options travel on the class)."""
    return type("Speech2TextWithScorers", (Speech2TextWithScorers,), {"extra": extra})
