"""Decode with an ESPnet ASR model (ours or ESPnet's) with our components registered.

Registers espnet-llm-plugin components and decodes with ESPnet's ``asr_inference`` options and
output layout (``1best_recog/text``, ``{n}best_recog/...``): models whose config.yaml names
our components load back (:mod:`espnet_llm_plugin.decoding.inference_loop`).
Adds decoding options ESPnet lacks, as ESPnet beam-search scorers (so they combine with CTC,
LM and every other scorer), set in the decode YAML or on the command line:
``no_repeat_ngram_size`` (forbid repeating any n-gram; against insertion loops),
``hf_lm_path``/``hf_lm_weight`` (shallow fusion with a Hugging Face causal LM whose tokenizer
is the ASR token list), and kNN-LM decoding with a datastore from ``build_datastore``:
``knnlm_datastore``, ``knnlm_query`` (lm|decoder), ``knnlm_lm_path``, ``knnlm_weight``,
``knnlm_lambda``, ``knnlm_k``, ``knnlm_temperature``, ``knnlm_backend`` (faiss|torch),
``knnlm_search_params`` (faiss search parameters, e.g. ``nprobe=16`` or ``efSearch=64``),
``knnlm_units_from_data`` (true: a multi-modal datastore's queries start with the utterance's
units, from the data entry ``units``: ``--data_path_and_name_and_type UNITS,units,text_int``);
``decoding_method`` (beam_search|hf_generate: Hugging Face generate for LLM-ASR models).
Our input errors (a bad option, datastore or data file) are one line naming the file or
option; ``--debug`` (ours, not passed to ESPnet) shows their traceback too. Any other error
keeps its traceback.
Optional data entries: ``context`` (passages for ``decoder: llm_xattn``, ``context_ids`` as
``text_int`` or ``context`` as ``text``) and ``units`` (units file ``utt u1 u2 ...``).
Also writes ``OUTPUT_DIR/timing.json`` (wall time and, when the data directory has
``utt2dur``, the audio duration) from which the recipe reports the real-time factor.

Example::

    python -m espnet_llm_plugin.bin.asr_inference --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.acc.ave.pth --nbest 10 \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir out
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.bin import espnet_entry


def split_extra_options(cmd: List[str], tmp_dir: Path, parser: Optional[argparse.ArgumentParser] = None):
    """Take our decoding options out of ``cmd`` and of its ``--config`` YAML.

    Returns ``(cmd for ESPnet, ExtraDecodingOptions)``; a filtered copy of the config is
    written to ``tmp_dir`` when it held any of our keys. With ``parser`` (ESPnet's inference
    parser) the value types of the config's other keys are checked too.

    Raises:
        ConfigError: a value of the wrong type, naming the file and key.
    """
    import yaml

    from espnet_llm_plugin.config_check import ConfigError, check_value_types, load_yaml_mapping
    from espnet_llm_plugin.decoding.speech2text import ExtraDecodingOptions
    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    values: dict = {}
    config = espnet_entry.config_path(cmd)
    if config is not None:
        mapping = load_yaml_mapping(config)
        n_keys = len(mapping)
        try:
            values.update(vars(ExtraDecodingOptions.pop_from(mapping)))
        except ValueError as e:  # the option names itself; add the file
            raise ConfigError(f"{config}: {e}") from None
        if parser is not None:  # ESPnet would use e.g. beam_size: "10" as it is
            check_value_types(mapping, parser, config_path=config)
        if len(mapping) < n_keys:  # ESPnet would reject our keys: give it a filtered copy
            filtered = (tmp_dir / "decode_config.yaml").as_posix()
            atomic_write_text(filtered, yaml.safe_dump(mapping))
            cmd = [filtered if a == config else f"--config={filtered}" if a == f"--config={config}" else a for a in cmd]
    out, i = [], 0
    while i < len(cmd):
        name = cmd[i].split("=", 1)[0]
        key = name[2:] if name.startswith("--") else None
        if key in ExtraDecodingOptions.__dataclass_fields__:
            if "=" in cmd[i]:
                raw, i = cmd[i].split("=", 1)[1], i + 1
            else:
                if i + 1 >= len(cmd):
                    raise ValueError(f"{name} needs a value")
                raw, i = cmd[i + 1], i + 2
            values[key] = ExtraDecodingOptions.parse_value(key, raw)
            continue
        out.append(cmd[i])
        i += 1
    return out, ExtraDecodingOptions(**values)


def audio_seconds(cmd: List[str]) -> Optional[float]:
    """Duration of the decoded utterances from ``utt2dur`` beside the speech scp."""
    for spec in espnet_entry.option_values(cmd, "--data_path_and_name_and_type"):
        path, name, _ = (spec.split(",") + ["", ""])[:3]
        if name != "speech":
            continue
        utt2dur = Path(path).parent / "utt2dur"
        if not utt2dur.is_file():
            return None
        durs = dict(line.split() for line in utt2dur.read_text().splitlines() if line.strip())
        keys = espnet_entry.option_values(cmd, "--key_file")
        if keys:
            wanted = [line.split(maxsplit=1)[0] for line in Path(keys[0]).read_text().splitlines() if line.strip()]
            return sum(float(durs[k]) for k in wanted if k in durs)
        return sum(float(v) for v in durs.values())
    return None


def num_utterances(cmd: List[str]) -> Optional[int]:
    """Utterances this job decodes: lines of ``--key_file``, else of the speech scp."""
    files = espnet_entry.option_values(cmd, "--key_file") or [
        spec.split(",")[0]
        for spec in espnet_entry.option_values(cmd, "--data_path_and_name_and_type")
        if spec.count(",") >= 2 and spec.split(",")[1] == "speech"
    ]
    if not files or not Path(files[0]).is_file():
        return None
    with open(files[0], encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def main(cmd: Optional[List[str]] = None) -> None:
    cmd = espnet_entry.argv(cmd)
    if espnet_entry.wants_help(cmd):
        espnet_entry.print_help(__spec__.name if __spec__ else __name__, __doc__, "espnet2.bin.asr_inference")
        return
    cmd, _ = espnet_entry.split_espnet_help(cmd)
    cmd, debug = espnet_entry.pop_debug(cmd)

    import tempfile

    import espnet_llm_plugin.tasks.llm_asr  # noqa: F401  (registers our components)
    from espnet_llm_plugin.cli_args import cli_errors
    from espnet_llm_plugin.config_check import ConfigError
    from espnet_llm_plugin.core.hf_causal_lm import LlmLoadError
    from espnet_llm_plugin.decoding.inference_loop import run_inference
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.quiet import quiet_espnet_import
    from espnet_llm_plugin.retrieval.datastore import DatastoreError
    from espnet_llm_plugin.retrieval.hf_lm_scorer import TokenListMismatch

    with quiet_espnet_import():
        from espnet.utils.cli_utils import get_commandline_args
        from espnet2.bin import asr_inference

    print(get_commandline_args(), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        parser = asr_inference.get_parser()
        with cli_errors("asr_inference", debug, (ConfigError, ValueError)):
            cmd, extra = split_extra_options(cmd, Path(tmp), parser)
        args = parser.parse_args(cmd)
        start = time.perf_counter()
        # our errors (bad options/data) are one line; ESPnet's own keep their traceback
        with cli_errors("asr_inference", debug, (DatastoreError, TokenListMismatch, LlmLoadError, ValueError)):
            run_inference(args, extra, num_utterances(cmd))
        elapsed = time.perf_counter() - start
    out_dirs = espnet_entry.option_values(cmd, "--output_dir")
    if out_dirs:
        seconds = audio_seconds(cmd)
        timing = {"elapsed_s": elapsed, "audio_s": seconds}
        atomic_write_text(Path(out_dirs[0]) / "timing.json", json.dumps(timing) + "\n")


if __name__ == "__main__":
    main()
