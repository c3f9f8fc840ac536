"""Train an ESPnet ASR model with espnet-llm-plugin components available.

Registers our components, checks the YAML config (unknown keys are named with the file;
token strings such as ``model_conf.sym_eos`` that the token list or the LLM lacks), fills
``decoder_conf.text_form.recipe_case`` from the training transcripts when an LLM decoder's text
form needs it, then runs ESPnet's own ``ASRTask.main``: ``--ngpu``, DDP (also spawned workers),
``--resume``, batch types, ``--init_param`` and ``--collect_stats`` all work as in ESPnet.

Example::

    python -m espnet_llm_plugin.bin.asr_train --config conf/train_asr.yaml \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound ...
"""

from __future__ import annotations

import sys
from typing import List, Optional

from espnet_llm_plugin.bin import espnet_entry


def main(cmd: Optional[List[str]] = None) -> None:
    cmd = espnet_entry.argv(cmd)
    if espnet_entry.wants_help(cmd):
        espnet_entry.print_help(__spec__.name if __spec__ else __name__, __doc__, "espnet2.tasks.asr")
        return
    cmd, _ = espnet_entry.split_espnet_help(cmd)

    from espnet_llm_plugin.config_check import ConfigError, check_llm_token_config, check_task_config
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask, recipe_case_options

    from espnet_llm_plugin.stats_frontend import check_stats_frontend

    config = espnet_entry.config_path(cmd)
    if config is not None:
        try:
            check_task_config(config, LlmASRTask.get_parser(), LlmASRTask.class_choices_list)
            for value in espnet_entry.option_values(cmd, "--normalize_conf"):
                if value.startswith("stats_file="):
                    check_stats_frontend(value.split("=", 1)[1], config)
        except ConfigError as e:
            sys.exit(f"asr_train: error: {e}")
    # token strings and the LLM's text form, on the merged config (YAML + command line)
    args = LlmASRTask.get_parser().parse_args(cmd)
    try:
        check_llm_token_config(args, config)
        cmd = cmd + recipe_case_options(args)
    except (ConfigError, ValueError) as e:
        sys.exit(f"asr_train: error: {e}")
    LlmASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
