"""The ``knnlm`` decode-time scorer: a :class:`KnnLmScorer` built from the decode options.

Two query modes (``knnlm_query``): ``lm``, a separate HF LM (``knnlm_lm_path``, else the
datastore's key encoder) gives log-probs and queries, and the kNN-LM joins the beam search as a
scorer with ``knnlm_weight``; ``decoder``, the ASR model's own LLM decoder is the base LM and its
last hidden state the query (the paper's setting), and the kNN-LM takes the decoder's place.
The datastore's key-encoder identity must match the query model's (refused otherwise), and a
multi-modal datastore needs the utterance's units (``knnlm_units_from_data``).
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from espnet_llm_plugin.core.decode_scorers import DecodeScorerContext, ScorerAddition
from espnet_llm_plugin.core.hf_causal_lm import unwrap_peft
from espnet_llm_plugin.retrieval.datastore import FaissDatastore, read_manifest
from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer, check_token_list
from espnet_llm_plugin.retrieval.key_encoder import lm_identity
from espnet_llm_plugin.retrieval.knnlm_scorer import DecoderQueryTap, KnnLmScorer, datastore_is_multimodal
from espnet_llm_plugin.retrieval.knnlm_settings import resolve_knnlm_settings

logger = logging.getLogger(__name__)


def _int_list(values: Any) -> List[int]:
    """ESPnet's padded ``text_int`` entry (tensor/array/list, -1 padding) -> list of ints."""
    if hasattr(values, "reshape") and hasattr(values, "tolist"):
        values = values.reshape(-1).tolist()
    return [int(v) for v in values if int(v) != -1]


def build_decode_scorer(ctx: DecodeScorerContext) -> ScorerAddition:
    """Build the kNN-LM from ``ctx.options``' ``knnlm_*`` keys (see ``ExtraDecodingOptions``)."""
    opts, bs = ctx.options, ctx.beam_search
    manifest = read_manifest(opts.knnlm_datastore)
    ident = manifest["key_encoder"]
    decoder: Optional[Any] = None
    if opts.knnlm_query == "lm":
        lm_path = opts.knnlm_lm_path or ident.get("model_path", "")
        build = (manifest.get("info") or {}).get("build") or {}
        # queries are framed like the keys; datastores that predate recorded framings
        # were built as [bos] text [eos], whatever the key encoder's llm_usage.json says now
        framing = build.get("framing") or {"start": ["<bos>"], "end": ["<eos>"]}
        base: Any = HfLmScorer(
            lm_path,
            token_list=ctx.token_list,
            layer=int(ident.get("layer", -1)),
            device=ctx.device,
            framing=framing,
            eos_id=int(ctx.asr_model.eos),
        )
        expect = base.identity()
        tokenizer = base.tokenizer
    else:
        decoder = bs.scorers.get("decoder")
        if decoder is None or not hasattr(decoder, "llm") or not hasattr(decoder, "tokenizer"):
            raise ValueError(
                "knnlm_query decoder needs an ASR model whose decoder is our LlmDecoder "
                f"(decoder: llm); this model's is {type(decoder).__name__}"
            )
        check_token_list(ctx.token_list, decoder.tokenizer, decoder.llm_path)
        base = DecoderQueryTap(decoder)
        expect = lm_identity(decoder.llm_path, unwrap_peft(decoder.llm), decoder.tokenizer, -1)
        expect.pop("config_hash")  # the decoder's LLM may carry LoRA: same shape, other weights
        tokenizer = decoder.tokenizer
    expect.pop("model_path")
    datastore = FaissDatastore.load(
        opts.knnlm_datastore,
        expect=expect,
        backend=opts.knnlm_backend,
        device=ctx.device,
        search_params=opts.knnlm_search_params or None,
    )
    multimodal = datastore_is_multimodal(manifest, tokenizer)
    if multimodal and opts.knnlm_query != "lm":
        raise ValueError(
            f"kNN-LM datastore {opts.knnlm_datastore} is multi-modal (speech-span keys): its queries "
            "come from the speech+text key encoder; use knnlm_query lm"
        )
    if multimodal and not opts.knnlm_units_from_data:
        raise ValueError(
            f"kNN-LM datastore {opts.knnlm_datastore} is multi-modal (speech-span keys): set "
            "knnlm_units_from_data: true and pass --data_path_and_name_and_type <units file>,units,text_int"
        )
    if opts.knnlm_units_from_data and not multimodal:
        raise ValueError(f"knnlm_units_from_data is set, but kNN-LM datastore {opts.knnlm_datastore} is text-only")
    settings = resolve_knnlm_settings(
        {
            "lambda": opts.knnlm_lambda,
            "k": opts.knnlm_k,
            "temperature": opts.knnlm_temperature,
            "temperature_unit": opts.knnlm_temperature_unit or None,
        },
        ident.get("model_path"),
        "decode config knnlm_*",
    )
    if opts.knnlm_temperature is not None and not opts.knnlm_temperature_unit:
        logger.warning(
            "knnlm_temperature %g is in units of the datastore's distance scale (%g): raw squared "
            "distance %g; set knnlm_temperature_unit: absolute for a raw temperature (the meaning "
            "before 2026-12)",
            opts.knnlm_temperature,
            datastore.distance_scale,
            opts.knnlm_temperature * datastore.distance_scale,
        )
    knn = KnnLmScorer.from_settings(base, datastore, settings, multimodal=multimodal)

    def units_hook(units: Any) -> None:
        # a text-only datastore's query context is reset per utterance, too
        use = opts.knnlm_units_from_data and units is not None
        knn.set_query_context(_int_list(units) if use else None)

    replaces = None if opts.knnlm_query == "lm" else "decoder"
    if replaces:
        logger.info("decoder scores replaced by kNN-LM over %s", opts.knnlm_datastore)
    return ScorerAddition(knn, replaces=replaces, hooks={"units": units_hook})
