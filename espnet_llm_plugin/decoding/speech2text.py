"""ESPnet's ``Speech2Text`` plus our decoding-time scorers.

ESPnet's ``Speech2Text`` builds its beam search in ``__init__`` and takes no extra scorers.
``Speech2TextWithScorers`` adds them afterwards to the beam search's ``scorers``,
``full_scorers`` and ``weights``. All of ours are batch scorers, so ESPnet's choice of
``BatchBeamSearch`` stands.

Per utterance, ``__call__`` takes the data entries ESPnet's inference loop passes besides
``speech``: ``context`` (retrieved passages for a ``decoder: llm_xattn`` model, fed with
:func:`~espnet_llm_plugin.asr.llm_xattn_decoder.feed_context`) and ``units`` (the utterance's
speech units, the query context of a multi-modal kNN-LM datastore).

With an LLM decoder whose ``text_form`` is not the recipe's (e.g. sentence case for an upper-case
recipe), the decoded text is mapped back with ``TextForm.to_recipe``.

``decoding_method: hf_generate`` decodes LLM-ASR models with Hugging Face ``generate``
(:meth:`~espnet_llm_plugin.asr.llm_decoder.LlmDecoder.generate`) instead of ESPnet's beam search,
for comparison; results have ESPnet's ``(text, token, token_int, hyp)`` form (1-best). As in ESPnet's
beam search, a text that reaches the length limit gets an eos appended to its ``yseq`` but not
scored: the score holds ``p(eos)`` only when ``generate`` stopped on eos.

Scorers with weight 0 are left out of the beam search (:meth:`Speech2TextWithScorers.add_scorer`),
as ESPnet leaves out its own: a scorer's ``-inf`` times 0 would make every score NaN.

:class:`Speech2Text` is the public Python API (``from espnet_llm_plugin import Speech2Text``):
importing this module registers our components with ESPnet, so a fresh process needs no
``register()`` call; ESPnet's decode options and ours (:class:`ExtraDecodingOptions`) are
constructor keywords; a call takes a waveform (array or tensor) or an audio file path; and
:meth:`Speech2Text.from_packed` decodes with a pack written by ``pack_model``. Each n-best entry
is a :class:`NBestEntry` tuple ``(text, token, token_int, hyp)``, ESPnet's shape, with
``.score`` (the total log score) besides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import tempfile
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Union

import numpy as np
import torch

from espnet_llm_plugin.quiet import quiet_espnet_import

with quiet_espnet_import():
    import espnet2.bin.asr_inference as espnet_asr_inference
    from espnet2.bin.asr_inference import Speech2Text as EspnetSpeech2Text

# registers our components with ESPnet (and applies our ESPnet fixes) in every process that
# imports this module: models whose config.yaml names them build without a register() call
import humanfriendly
import yaml
from espnet.nets.beam_search import Hypothesis

from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
from espnet_llm_plugin.asr.llm_xattn_decoder import feed_context
from espnet_llm_plugin.core.decode_scorers import DecodeScorerContext, get_decode_scorer, scorer_confs
from espnet_llm_plugin.decoding.progress import ProgressLog
from espnet_llm_plugin.fileio.audio import read_audio, resample
from espnet_llm_plugin.packing.layout import PackError, load_weights
from espnet_llm_plugin.packing.unpack import open_pack
from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

logger = logging.getLogger(__name__)


KNNLM_QUERIES = ("lm", "decoder")
KNNLM_BACKENDS = ("faiss", "torch")
DECODING_METHODS = ("beam_search", "hf_generate")


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
    ``knnlm_weight`` (beam-search weight of the ``knnlm`` scorer, ``lm`` mode; 0: left out),
    ``knnlm_lambda``, ``knnlm_k``, ``knnlm_temperature`` (in units of the datastore's distance
    scale unless ``knnlm_temperature_unit: absolute``; unset: the key encoder's settings, see
    :mod:`espnet_llm_plugin.retrieval.knnlm_settings`), ``knnlm_backend`` (``faiss|torch``),
    ``knnlm_search_params`` (faiss search-time parameters of an approximate index, e.g.
    ``nprobe=16`` for IVF or ``efSearch=64`` for HNSW; faiss' defaults, nprobe 1 and efSearch
    16, lose many neighbours), ``knnlm_units_from_data``
    (multi-modal datastore: the utterance's units come from the data
    entry ``units``, ``--data_path_and_name_and_type <units file>,units,text_int``).

    ``decoding_method``: ``beam_search`` (ESPnet's, with all scorers) or ``hf_generate``
    (LLM-ASR models only: HF ``generate`` with ``num_beams = beam_size`` and
    ``no_repeat_ngram_size``; ESPnet's scorers are not used).

    ``scorers``: any decode-time scorer registered in :mod:`espnet_llm_plugin.core.decode_scorers`,
    name -> ``{weight: w, conf: {...}}`` (the builder's keywords); the keys above are the
    built-in scorers' shorthand.
    """

    no_repeat_ngram_size: int = 0  # 0: off
    hf_lm_path: str = ""
    hf_lm_weight: float = 0.0
    knnlm_datastore: str = ""
    knnlm_query: str = "lm"
    knnlm_lm_path: str = ""
    knnlm_weight: float = 0.3
    # None: the kNN-LM settings of the key encoder (retrieval/knnlm_settings.py: library
    # defaults measured on SmolLM2, then the key encoder's llm_usage.json "knnlm" section)
    knnlm_lambda: Optional[float] = None
    knnlm_k: Optional[int] = None
    knnlm_temperature: Optional[float] = None
    knnlm_temperature_unit: str = ""  # "": from the settings; distance_scale | absolute
    knnlm_backend: str = "faiss"
    knnlm_search_params: str = ""
    knnlm_units_from_data: bool = False
    decoding_method: str = "beam_search"
    # any registered decode-time scorer: name -> {weight, conf} (core/decode_scorers.py)
    scorers: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if kind.startswith("Optional["):
                if value is None:
                    continue
                kind = kind[len("Optional[") : -1]
            if kind.startswith("Dict["):
                if not isinstance(value, dict):
                    raise ValueError(f"decoding option {f.name} must be a mapping, got {value!r}")
                continue
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"decoding option {f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
                if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                    setattr(self, f.name, float(value))
                    continue
                raise ValueError(f"decoding option {f.name} must be of type {kind}, got {value!r}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.hf_lm_weight != 0 and not self.hf_lm_path:
            raise ValueError("hf_lm_weight is set but hf_lm_path is empty")
        if self.knnlm_query not in KNNLM_QUERIES:
            raise ValueError(f"knnlm_query must be one of {KNNLM_QUERIES}, got {self.knnlm_query!r}")
        if self.knnlm_backend not in KNNLM_BACKENDS:
            raise ValueError(f"knnlm_backend must be one of {KNNLM_BACKENDS}, got {self.knnlm_backend!r}")
        scorer_confs(self)  # names registered, each {weight, conf}
        if self.decoding_method not in DECODING_METHODS:
            raise ValueError(f"decoding_method must be one of {DECODING_METHODS}, got {self.decoding_method!r}")
        if self.knnlm_lambda is not None and not 0.0 <= self.knnlm_lambda <= 1.0:
            raise ValueError(f"knnlm_lambda must be in [0, 1], got {self.knnlm_lambda}")
        if (self.knnlm_k is not None and self.knnlm_k < 1) or (
            self.knnlm_temperature is not None and self.knnlm_temperature <= 0
        ):
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
        kind = str(cls.__dataclass_fields__[key].type)
        if kind.startswith("Optional["):
            kind = kind[len("Optional[") : -1]
        if kind.startswith("Dict["):
            value = yaml.safe_load(raw)
            if not isinstance(value, dict):
                raise ValueError(f"--{key} must be a YAML mapping, got {raw!r}")
            return value
        try:
            return _TYPES[kind](raw)
        except ValueError:
            raise ValueError(f"--{key} must be of type {kind}, got {raw!r}") from None


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(raw)


_TYPES = {"int": int, "float": float, "str": str, "bool": _parse_bool}


class NBestEntry(NamedTuple):
    """One n-best entry: ESPnet's ``(text, token, token_int, hyp)`` tuple, plus ``.score``."""

    text: Optional[str]
    token: List[str]
    token_int: List[int]
    hyp: Any  # espnet.nets.beam_search.Hypothesis (yseq, score, scores)

    @property
    def score(self) -> float:
        """Total (weighted) log score of the hypothesis."""
        return float(self.hyp.score)


class _PluginASRTask(LlmASRTask):
    """``LlmASRTask`` that also reads a pack's safetensors weights (strictly: every stored key
    must be the model's, every model key stored or filled from its referenced frozen base)."""

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        if model_file is None or not str(model_file).endswith(".safetensors"):
            return super().build_model_from_file(config_file, model_file, device)

        model, args = super().build_model_from_file(config_file, None, device)
        state = load_weights(model_file)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise PackError(f"{model_file} does not fit the model of {config_file}: {e}") from None
        return model, args


_TASK_LOCK = threading.Lock()


@contextlib.contextmanager
def _plugin_task() -> Iterator[None]:
    """ESPnet's ``Speech2Text.__init__`` builds the model with the module-level ``ASRTask`` of
    ``espnet2.bin.asr_inference``: ours while it runs (data names ``context``/``units``, the
    LLM-dependent config values, safetensors weights)."""
    with _TASK_LOCK:
        old = espnet_asr_inference.ASRTask
        espnet_asr_inference.ASRTask = _PluginASRTask
        try:
            yield
        finally:
            espnet_asr_inference.ASRTask = old


def _espnet_option_names() -> set:
    return set(inspect.signature(EspnetSpeech2Text.__init__).parameters) - {"self"}


class Speech2TextWithScorers(EspnetSpeech2Text):
    """``Speech2Text(**espnet_kwargs, **our_options)`` with ``extra`` scorers added to its beam
    search. Our options (:class:`ExtraDecodingOptions` names) given as keywords override the
    class's ``extra`` (which ``asr_inference`` binds with :func:`speech2text_class`)."""

    extra = ExtraDecodingOptions()
    progress: Optional[ProgressLog] = None  # set per job by speech2text_class

    def __init__(self, *args, **kwargs):
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in ExtraDecodingOptions.__dataclass_fields__}
        if ours:  # validated as a whole, like the decode YAML's
            self.extra = ExtraDecodingOptions(**{**dataclasses.asdict(type(self).extra), **ours})
        unknown = sorted(set(kwargs) - _espnet_option_names())
        if unknown:
            raise TypeError(
                f"unknown decoding option(s) {', '.join(unknown)}: neither ESPnet's Speech2Text "
                f"options nor ours ({', '.join(ExtraDecodingOptions.__dataclass_fields__)})"
            )
        with _plugin_task():
            super().__init__(*args, **kwargs)
        self.hf_num_beams = int(kwargs.get("beam_size", 20))  # ESPnet's default beam size
        self.knnlm: Optional[Any] = None  # the KnnLmScorer, when one is added
        self._warned_keys: set = set()
        # data entry name -> per-utterance hooks of the added scorers (e.g. units -> kNN-LM)
        self._entry_hooks: Dict[str, List[Callable[[Any], None]]] = {}
        bs = self.beam_search
        if self.extra.decoding_method == "hf_generate":
            self._check_hf_generate()
            return
        if bs is None:
            if self.extra.knnlm_units_from_data:
                raise ValueError("knnlm_units_from_data is set, but this model decodes without beam search")
            return
        if self.extra.knnlm_units_from_data and not self.extra.knnlm_datastore:
            raise ValueError("knnlm_units_from_data is set, but knnlm_datastore is empty (no kNN-LM)")
        ctx = DecodeScorerContext(
            token_list=list(self.asr_model.token_list),
            device=str(getattr(self, "device", "cpu")),
            asr_model=self.asr_model,
            beam_search=bs,
            options=self.extra,
        )
        for name, weight, conf in scorer_confs(self.extra):
            self._add_decode_scorer(name, weight, conf, ctx)

    def __call__(self, speech: Any, context: Any = None, units: Any = None, **kwargs: Any):
        """Decode one utterance; ``context``/``units``: its data entries of those names (or None).

        Args:
            speech: ``(T,)`` samples at the model's rate (numpy array or tensor), or the path
                of an audio file (any rate: resampled; several channels: averaged).

        Returns:
            What ESPnet's ``Speech2Text.__call__`` returns, each n-best entry a
            :class:`NBestEntry` ``(text, token, token_int, hyp)`` with ``.score``; text in the
            recipe's form.
        """
        if isinstance(speech, (str, Path)):
            speech = self.read_audio(speech)
        for key in kwargs:
            if key not in self._warned_keys:  # e.g. a reference text given as data: not used
                logger.warning("data entry '%s' is not used in decoding", key)
                self._warned_keys.add(key)

        feed_context(self, context)
        hooks = self._entry_hooks.get("units", [])
        for hook in hooks:
            hook(units)
        if not hooks and units is not None:
            raise ValueError(
                "data entry 'units' was given, but no multi-modal kNN-LM uses it "
                "(set knnlm_datastore and knnlm_units_from_data: true, or drop the units entry)"
            )
        results = _as_hypotheses(self.to_recipe_form(super().__call__(speech)))
        if self.progress is not None:
            self.progress.tick()
        return results

    @property
    def sample_rate(self) -> int:
        """The sample rate the model was trained at (``frontend_conf.fs``, ESPnet's default 16 kHz)."""
        fs = (getattr(self.asr_train_args, "frontend_conf", None) or {}).get("fs", 16000)
        if isinstance(fs, str):
            fs = humanfriendly.parse_size(fs)
        return int(fs)

    def read_audio(self, path: Union[str, Path]) -> np.ndarray:
        """``(T,)`` float32 samples of an audio file at :attr:`sample_rate`."""

        wav, sr = read_audio(str(path))
        return resample(wav, sr, self.sample_rate) if sr != self.sample_rate else wav

    def to_recipe_form(self, results: List[Any]) -> List[Any]:
        """ESPnet's n-best with the text in the recipe's form (see :func:`recipe_form_results`)."""
        return recipe_form_results(results, getattr(self.asr_model, "decoder", None))

    # ------------------------------------------------------------------ hf_generate
    def _check_hf_generate(self) -> None:
        decoder = getattr(self.asr_model, "decoder", None)
        if not isinstance(decoder, LlmDecoder):
            raise ValueError(
                "decoding_method hf_generate needs an LLM-ASR model (decoder: llm or llm_xattn); "
                f"this model's decoder is {type(decoder).__name__}"
            )
        if self.nbest != 1:
            raise ValueError(f"decoding_method hf_generate gives the 1-best only; got nbest {self.nbest}")
        if self.extra.knnlm_datastore or self.extra.hf_lm_path or self.extra.knnlm_units_from_data:
            raise ValueError("decoding_method hf_generate uses no ESPnet scorers: drop knnlm_*/hf_lm_* options")
        logger.info(
            "decoding_method hf_generate: Hugging Face generate with num_beams=%d, "
            "no_repeat_ngram_size=%d; ESPnet's scorers (ctc, lm, ngram, length bonus) are not used",
            self.hf_num_beams,
            self.extra.no_repeat_ngram_size,
        )

    def _decode_single_sample(self, enc: Any):
        if self.extra.decoding_method != "hf_generate":
            return super()._decode_single_sample(enc)
        return self._hf_generate(enc)

    @torch.no_grad()
    def _hf_generate(self, enc: torch.Tensor) -> List[Any]:
        """``enc (T, D)`` adapter outputs -> ``[(text, token, token_int, hyp)]`` (1-best)."""
        decoder = self.asr_model.decoder
        if self.maxlenratio == 0:  # ESPnet's rule for the output length limit
            max_new = enc.size(0)
        elif self.maxlenratio < 0:
            max_new = -int(self.maxlenratio)
        else:
            max_new = max(1, int(self.maxlenratio * enc.size(0)))
        token_int = decoder.generate(
            enc,
            max_new_tokens=max_new,
            num_beams=self.hf_num_beams,
            no_repeat_ngram_size=self.extra.no_repeat_ngram_size,
        )
        sos, eos = self.asr_model.sos, self.asr_model.eos
        # generate drops the eos it stopped on; a text as long as the limit stopped without one
        ended = len(token_int) < max_new
        # as ESPnet's beam search at its length limit: the yseq ends with eos either way ...
        yseq = torch.tensor([sos] + token_int + [eos], device=enc.device)
        # ... but the score holds p(eos) only for an eos that was generated
        scored = yseq[1:] if ended else yseq[1:-1]
        if scored.numel() == 0:
            logp = torch.zeros((), device=enc.device)
        else:
            n_in = scored.size(0)  # decoder inputs [sos, t1, ...] predict the scored tokens
            logits, _ = decoder(
                enc.unsqueeze(0),
                torch.tensor([enc.size(0)], device=enc.device),
                yseq[None, :n_in],
                torch.tensor([n_in], device=enc.device),
            )
            logp = torch.log_softmax(logits[0], dim=-1).gather(1, scored[:, None]).sum()
        hyp = Hypothesis(yseq=yseq, score=logp.cpu(), scores={"decoder": logp.cpu()}, states={})
        token_int = [t for t in token_int if t != 0]  # as ESPnet: id 0 is blank
        token = self.converter.ids2tokens(token_int)
        text = self.tokenizer.tokens2text(token) if self.tokenizer is not None else None
        return [(text, token, token_int, hyp)]

    def _add_decode_scorer(self, name: str, weight: float, conf: Dict[str, Any], ctx: DecodeScorerContext) -> None:
        """Build the registered decode-time scorer ``name`` and add it to the beam search (or
        put it in the place of the scorer it replaces, keeping that one's weight)."""
        added = get_decode_scorer(name).build(ctx, conf)
        bs = self.beam_search
        if added.replaces is None:
            self.add_scorer(name, added.scorer, weight)
        elif added.replaces not in bs.scorers:
            raise ValueError(f"decode scorer '{name}' replaces '{added.replaces}', which this beam search lacks")
        else:
            bs.scorers[added.replaces] = added.scorer
            bs.full_scorers[added.replaces] = added.scorer
        for entry, hook in added.hooks.items():
            self._entry_hooks.setdefault(entry, []).append(hook)
        if name == "knnlm":
            self.knnlm = added.scorer

    def add_scorer(self, name: str, scorer: Any, weight: float) -> None:
        """Add ``scorer`` to the beam search with ``weight``; weight 0 leaves it out, as ESPnet's
        ``BeamSearch`` leaves out its own zero-weight scorers (``0 * -inf`` would be NaN)."""
        bs = self.beam_search
        if name in bs.scorers:
            raise ValueError(f"a beam-search scorer named '{name}' exists already")
        if weight == 0:
            logger.info("beam-search scorer %s has weight 0: not used", name)
            return
        bs.scorers[name] = scorer
        bs.full_scorers[name] = scorer
        bs.weights[name] = weight
        logger.info("added beam-search scorer %s (weight %s)", name, weight)


class Speech2Text(Speech2TextWithScorers):
    """Decode speech with an ESPnet ASR model, ours or ESPnet's: the public Python API.

    Keywords: ESPnet's ``Speech2Text`` options (``asr_train_config``, ``asr_model_file``,
    ``beam_size``, ``ctc_weight``, ``lm_weight``, ``penalty``, ``nbest``, ``maxlenratio``,
    ``device="cpu"|"cuda"``, ...) and ours (:class:`ExtraDecodingOptions`: ``hf_lm_path``,
    ``hf_lm_weight``, ``knnlm_datastore``, ``knnlm_weight``, ``no_repeat_ngram_size``, ...).
    ``asr_model_file`` may be an ESPnet ``.pth`` or a pack's ``.safetensors``.

    Example::

        from espnet_llm_plugin import Speech2Text
        speech2text = Speech2Text.from_packed("asr_pack.zip", beam_size=5)
        print(speech2text("utt.wav")[0].text)

    Calling it returns the n-best list, best first, of :class:`NBestEntry`
    ``(text, token, token_int, hyp)`` (ESPnet's tuple; ``.score`` is ``hyp.score``).
    """

    packed: Any = None  # the PackedModel of from_packed (keeps an extracted archive alive)

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, **kwargs: Any) -> "Speech2Text":
        """As ESPnet's: ``model_tag`` from the ESPnet model zoo (``espnet_model_zoo`` needed)."""
        if model_tag is not None:
            from espnet_model_zoo.downloader import ModelDownloader

            kwargs.update(ModelDownloader().download_and_unpack(model_tag))
        return cls(**kwargs)

    @classmethod
    def from_packed(
        cls,
        path: Union[str, Path],
        base_dir: Union[str, Path, None] = None,
        use_packed_decode_config: bool = True,
        **decode_options: Any,
    ) -> "Speech2Text":
        """A ``Speech2Text`` from a pack (a directory from ``pack_model`` / ``unpack_model``, or
        a ``.zip`` / ``.tar`` / ``.tar.gz`` archive, extracted to a temporary directory).

        Args:
            path: the pack.
            base_dir: a directory holding the base models (``DIR/<name>`` or ``DIR``); without
                it they are found as :func:`~espnet_llm_plugin.packing.unpack.find_base` says
                (an unpacked pack's links, the ``prepare_pretrained`` cache).
            use_packed_decode_config: start from the decode options that produced the pack's
                results (``decode.yaml``); False: ESPnet's defaults.
            decode_options: constructor keywords; they override the packed ones.

        Raises:
            PackError: not a pack, damaged, or a base model missing / with another hash.
        """
        packed = open_pack(path, base_dirs=[base_dir] if base_dir else ())
        options: Dict[str, Any] = {}
        if use_packed_decode_config:
            accepted = _espnet_option_names() | set(ExtraDecodingOptions.__dataclass_fields__)
            for key, value in packed.decode_options().items():
                if key in accepted:
                    options[key] = value
                else:  # e.g. ngpu or batch_size of the decoding CLI
                    logger.info("%s: packed decode option %s is not a Speech2Text option: not used", path, key)
        options.update(decode_options)
        with tempfile.TemporaryDirectory(prefix="espnet_llm_pack_config_") as tmp:
            config = Path(tmp) / "config.yaml"  # the pack's config with this machine's paths
            config.write_text(yaml.safe_dump(packed.config(), sort_keys=False), encoding="utf-8")
            self = cls(asr_train_config=config, asr_model_file=packed.weights, **options)
        self.packed = packed
        return self


def recipe_form_results(results: List[Any], decoder: Any) -> List[Any]:
    """Decoded text back to the recipe's form (case, punctuation) when the LLM decoder reads
    and writes another one (``decoder.text_form``, e.g. sentence case for an upper-case
    recipe), so the ``text`` files and scoring compare recipe-form text; tokens and ids stay
    the LLM's.

    Args:
        results: ESPnet's n-best ``[(text, token, token_int, hyp), ...]``.
        decoder: the ASR model's decoder (others than ours have no text form: unchanged).
    """
    form = getattr(decoder, "text_form", None)
    if form is None or form.is_identity:
        return results
    return [
        (form.to_recipe(r[0]),) + tuple(r[1:]) if isinstance(r, tuple) and r and isinstance(r[0], str) else r
        for r in results
    ]


def _as_hypotheses(results: Any) -> Any:
    """ESPnet's n-best list with each ``(text, token, token_int, hyp)`` as a :class:`NBestEntry`
    (other result shapes, e.g. with intermediate CTC outputs, unchanged)."""
    if isinstance(results, list) and all(isinstance(r, tuple) and len(r) == 4 for r in results):
        return [NBestEntry(*r) for r in results]
    return results


def speech2text_class(extra: ExtraDecodingOptions, num_utts: Optional[int] = None) -> type:
    """A ``Speech2TextWithScorers`` subclass bound to ``extra`` (ESPnet constructs the class
    itself, from keyword arguments it knows, so the options travel on the class).

    ``num_utts``: utterances this job decodes, for progress lines with an ETA in its log.
    """
    progress = ProgressLog(num_utts, "decoded utterances")
    return type("Speech2TextWithScorers", (Speech2TextWithScorers,), {"extra": extra, "progress": progress})
