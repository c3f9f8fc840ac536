"""``LlmASRTask``: ESPnet's ASR task with our components registered.

Defined in its own module that registers on import, because ESPnet's multiprocessing DDP
mode spawns workers with ``target=cls.main_worker``: a spawned worker unpickles
``LlmASRTask``, which imports this module, which registers again in that process before
any model is built. ``build_model_from_file`` (decoding) works the same way.

New top-level config keys (e.g. a retriever) go here as extra ``ClassChoices`` appended to
``class_choices_list`` together with a ``build_model`` override that builds them.
"""

from __future__ import annotations

from espnet_llm_plugin.espnet_fixes import apply_espnet_fixes
from espnet_llm_plugin.quiet import quiet_espnet_import
from espnet_llm_plugin.registry import register

with quiet_espnet_import():
    from espnet2.tasks.asr import ASRTask

register()
apply_espnet_fixes()


class LlmASRTask(ASRTask):
    """ESPnet ``ASRTask`` whose ClassChoices include espnet-llm-plugin components."""
