"""Command-line tools: ``python -m espnet_llm_plugin.bin.<name> --help``."""
