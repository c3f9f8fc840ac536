"""Text-only language models for recipes without a pretrained LLM.

:mod:`tokenizer_training` trains a byte-level BPE tokenizer on the recipe's transcripts;
:mod:`causal_lm_pretraining` trains a small Llama-style causal LM on them. Both are saved with
``save_pretrained``, so later stages load them through ``AutoTokenizer`` /
``AutoModelForCausalLM.from_pretrained`` exactly like a user's own (e.g. 7B) model.
"""
