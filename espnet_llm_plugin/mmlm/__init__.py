"""Speech+text language model: unit tokens in an LLM vocabulary, mixed training, retrieval."""
