"""Decode a data directory into ESPnet's n-best layout, with our Speech2Text and data names.

ESPnet's ``espnet2.bin.asr_inference.inference`` builds the module-level ``Speech2Text`` and
``ASRTask`` of its own module. Rather than replacing those globals, this loop does what it
does with our classes: :class:`~espnet_llm_plugin.tasks.llm_asr.LlmASRTask`'s data iterator
(which knows the data names ``context`` and ``units``) and a
:class:`~espnet_llm_plugin.decoding.speech2text.Speech2TextWithScorers` bound to our options.
Arguments are ESPnet's (its own ``get_parser``), and the output is ESPnet's layout:
``OUTPUT_DIR/{n}best_recog/{text,token,token_int,score}``, one line per utterance.
"""

from __future__ import annotations

import argparse
import inspect
import logging
from typing import Optional

from espnet_llm_plugin.decoding.speech2text import ExtraDecodingOptions, speech2text_class
from espnet_llm_plugin.quiet import quiet_espnet_import
from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

with quiet_espnet_import():
    from espnet.nets.beam_search import Hypothesis
    from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError
    from espnet2.bin.asr_inference import Speech2Text as EspnetSpeech2Text
    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

# ESPnet inference options this loop does not implement (ESPnet's own refuses the first three)
_UNSUPPORTED = {
    "batch_size": (lambda v: v > 1, "batch decoding is not implemented (use --batch_size 1)"),
    "word_lm_train_config": (lambda v: v is not None, "a word LM is not implemented"),
    "ngpu": (lambda v: v > 1, "decoding uses one GPU at most (--ngpu 0 or 1)"),
    "enh_s2t_task": (lambda v: v, "joint enhancement + ASR models: use espnet2.bin.asr_inference"),
    "multi_asr": (lambda v: v, "multi-speaker ASR: use espnet2.bin.asr_inference"),
    "model_tag": (
        lambda v: v is not None,
        "--model_tag (a download) is not supported: give "
        "--asr_train_config/--asr_model_file, or Speech2Text.from_packed in Python",
    ),
}


def run_inference(args: argparse.Namespace, extra: ExtraDecodingOptions, num_utts: Optional[int] = None) -> None:
    """Decode every utterance of ``args.data_path_and_name_and_type`` into ``args.output_dir``.

    Args:
        args: ESPnet's ``asr_inference`` arguments (``espnet2.bin.asr_inference.get_parser()``).
        extra: our decoding options (scorers, kNN-LM, decoding method).
        num_utts: utterances in this job, for the progress lines in its log.
    """
    for name, (bad, message) in _UNSUPPORTED.items():
        if bad(getattr(args, name)):
            raise ValueError(f"--{name} {getattr(args, name)}: {message}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    set_all_random_seed(args.seed)

    espnet_names = set(inspect.signature(EspnetSpeech2Text.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in vars(args).items() if k in espnet_names}
    kwargs["device"] = "cuda" if args.ngpu >= 1 else "cpu"
    speech2text = speech2text_class(extra, num_utts)(**kwargs)

    loader = LlmASRTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=1,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=LlmASRTask.build_preprocess_fn(speech2text.asr_train_args, False),
        collate_fn=LlmASRTask.build_collate_fn(speech2text.asr_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    with DatadirWriter(args.output_dir) as writer:
        for keys, batch in loader:
            key = keys[0]
            batch = {k: v[0] for k, v in batch.items() if not k.endswith("_lengths")}
            try:
                results = speech2text(**batch)
            except TooShortUttError as e:
                # as ESPnet: the utterance gets an empty hypothesis instead of stopping the job
                logging.warning("utterance %s: %s", key, e)
                results = [(" ", ["<space>"], [2], Hypothesis(score=0.0, scores={}, states={}, yseq=[]))] * args.nbest
            if isinstance(results, tuple):  # (n-best, intermediate CTC outputs)
                results = results[0]
            for n, (text, token, token_int, hyp) in zip(range(1, args.nbest + 1), results):
                out = writer[f"{n}best_recog"]
                out["token"][key] = " ".join(token)
                out["token_int"][key] = " ".join(map(str, token_int))
                out["score"][key] = str(hyp.score)
                if text is not None:
                    out["text"][key] = text
