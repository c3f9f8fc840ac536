"""What every method shares: per-model usage defaults, the text form and the prompt framing the LLM sees."""
