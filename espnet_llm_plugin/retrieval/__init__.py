"""Retrieval for ASR decoding (arXiv 2406.09618): memory windows, key encoder, datastore
(faiss or exact torch search), Hugging Face LM scorer and kNN-LM scorer for ESPnet beam search."""
