"""Packed models: a trained model as one directory or archive that decodes on another machine.

* :mod:`~espnet_llm_plugin.packing.layout`: what a pack holds (``pack.json``), its weights file
  (safetensors) and the checks every pack passes (no machine paths, file checksums).
* :mod:`~espnet_llm_plugin.packing.pack`: an experiment directory -> a pack.
* :mod:`~espnet_llm_plugin.packing.unpack`: a pack -> a usable model directory, the base
  models (LLM, SSL encoder) re-linked after their content hash is checked.
* :mod:`~espnet_llm_plugin.packing.model_card`: the pack's ``README.md``.
"""
