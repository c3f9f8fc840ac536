"""Train an ESPnet ASR model with espnet-llm-plugin components available.

Registers our components, checks the YAML config (unknown keys are named with the file;
token strings such as ``model_conf.sym_eos`` that the token list or the LLM lacks), fills
``decoder_conf.text_form.recipe_case`` from the training transcripts when an LLM decoder's text
form needs it, then runs ESPnet's own ``ASRTask.main``: ``--ngpu``, DDP (also spawned workers),
``--resume``, batch types, ``--init_param`` and ``--collect_stats`` all work as in ESPnet.

Unlike ESPnet's own entry: checkpoint files are read weights-only and written atomically
(:mod:`espnet_llm_plugin.espnet_fixes`), a crafted or truncated one is named in a one-line
error, and the output directory is locked while the training writes into it (a second
training into the same ``--output_dir`` is refused, naming the holder's pid). ``--debug``
(or ``ESPNET_LLM_PLUGIN_DEBUG=1``) prints the traceback of such errors too.

Example::

    python -m espnet_llm_plugin.bin.asr_train --config conf/train_asr.yaml \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound ...
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager, List, Optional

from espnet_llm_plugin.bin import espnet_entry


def main(cmd: Optional[List[str]] = None) -> None:
    cmd = espnet_entry.argv(cmd)
    if espnet_entry.wants_help(cmd):
        espnet_entry.print_help(__spec__.name if __spec__ else __name__, __doc__, "espnet2.tasks.asr")
        return
    cmd, _ = espnet_entry.split_espnet_help(cmd)
    cmd, debug = espnet_entry.pop_debug(cmd)

    from espnet_llm_plugin.asr.llm_token_config import check_llm_token_config
    from espnet_llm_plugin.cli_args import cli_errors
    from espnet_llm_plugin.config_check import ConfigError, check_task_config
    from espnet_llm_plugin.espnet_fixes import CheckpointLoadError
    from espnet_llm_plugin.fileio.atomic import DirectoryLockedError
    from espnet_llm_plugin.stats_frontend import check_stats_frontend
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask, recipe_case_options

    # our input errors are one line (the traceback too with --debug); others keep theirs
    config = espnet_entry.config_path(cmd)
    if config is not None:
        with cli_errors("asr_train", debug, (ConfigError,)):
            check_task_config(config, LlmASRTask.get_parser(), LlmASRTask.class_choices_list)
            for value in espnet_entry.option_values(cmd, "--normalize_conf"):
                if value.startswith("stats_file="):
                    check_stats_frontend(value.split("=", 1)[1], config)
    # token strings and the LLM's text form, on the merged config (YAML + command line)
    args = LlmASRTask.get_parser().parse_args(cmd)
    with cli_errors("asr_train", debug, (ConfigError, ValueError)):
        check_llm_token_config(args, config)
        cmd = cmd + recipe_case_options(args)
    # a crafted or truncated checkpoint (--init_param, --resume), a directory in use
    with cli_errors("asr_train", debug, (CheckpointLoadError, DirectoryLockedError)):
        with _output_dir_lock(args):
            LlmASRTask.main(cmd=cmd)


def _first_process(args: Any) -> bool:
    """Whether this process is the first (or only) one of a distributed training.

    ESPnet's multi-node launchers start one ``asr_train`` per node (``--dist_rank``, or the
    launcher's rank variable); they all write to the same ``--output_dir``, which only the first
    one locks. Spawned workers of one node do not come through here.
    """
    rank = getattr(args, "dist_rank", None)
    if rank is None:
        for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
            if os.environ.get(var, "").isdigit():
                rank = int(os.environ[var])
                break
    return rank is None or int(rank) == 0


def _output_dir_lock(args: Any) -> ContextManager[Any]:
    """An exclusive lock of ``--output_dir`` for the first process, else a no-op."""
    from espnet_llm_plugin.fileio.atomic import exclusive_dir_lock

    output_dir = getattr(args, "output_dir", None)
    if output_dir is None or not _first_process(args):
        return contextlib.nullcontext()
    return exclusive_dir_lock(output_dir, "asr_train")


if __name__ == "__main__":
    main()
