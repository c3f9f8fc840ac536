"""N-best rescoring with a text-only or speech+text causal LM, and MWER fine-tuning
(arXiv 2409.16654)."""
