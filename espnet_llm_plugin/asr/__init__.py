"""LLM-based ASR components (adapter, LLM decoder, matching loss)."""
