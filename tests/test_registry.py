"""Registry: table contents, idempotent registration, clash refusal."""

import pytest

from espnet_llm_plugin import registry
from espnet_llm_plugin.registry import Component, RegistryClashError, register, register_components


def test_table_targets_import_and_names_are_lower_case():
    rows = registry.components()
    assert rows, "the registry table is empty"
    for _, comp in rows:
        assert comp.name == comp.name.lower()
        assert isinstance(comp.load(), type)


def test_register_adds_to_espnet_class_choices_and_is_idempotent(asr_task):

    register()
    for module, comp in registry.components("espnet2.tasks.asr"):
        choices = getattr(asr_task, f"{comp.choice}_choices")
        assert choices.classes[comp.name] is comp.load()
        assert comp.name in choices.choices()

    def snapshot():
        return {
            k: dict(getattr(asr_task, k).classes)
            for k in dir(asr_task)
            if k.endswith("_choices") and hasattr(getattr(asr_task, k), "classes")
        }

    before = snapshot()
    assert register() == []  # second call adds nothing
    after = snapshot()
    assert before == after


def test_clash_with_an_espnet_name_is_refused_and_nothing_is_added(asr_task):

    ok = Component("postencoder", "clash_probe_ok", "espnet_llm_plugin.asr.adapter:Conv1dMlpAdapter", "")
    clash = Component(  # 'transformer' is ESPnet's own encoder
        "encoder", "transformer", "espnet_llm_plugin.asr.adapter:Conv1dMlpAdapter", ""
    )
    with pytest.raises(RegistryClashError, match="already a encoder choice"):
        register_components("espnet2.tasks.asr", [ok, clash])
    assert "clash_probe_ok" not in asr_task.postencoder_choices.classes


def test_wrong_base_class_is_refused():
    wrong = Component("decoder", "adapter_as_decoder", "espnet_llm_plugin.asr.adapter:Conv1dMlpAdapter", "")
    with pytest.raises(TypeError, match="AbsDecoder"):
        register_components("espnet2.tasks.asr", [wrong])


def test_unknown_choice_is_reported():
    bad = Component("retriever", "x", "espnet_llm_plugin.asr.adapter:Conv1dMlpAdapter", "")
    with pytest.raises(RegistryClashError, match="no ClassChoices 'retriever_choices'"):
        register_components("espnet2.tasks.asr", [bad])


def test_task_subclass_module_registers_on_import(asr_task):
    # what a spawned DDP worker does: import the task's module, then build
    import importlib

    asr_task.postencoder_choices.classes.pop("conv1d_mlp_adapter", None)
    import espnet_llm_plugin.tasks.llm_asr as mod

    importlib.reload(mod)
    assert "conv1d_mlp_adapter" in asr_task.postencoder_choices.classes
    assert issubclass(mod.LlmASRTask, asr_task.ASRTask)
