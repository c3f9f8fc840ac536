"""Discrete speech units (arXiv 2406.09618): frame features -> k-means -> unit ids.

* :mod:`.unit_features`: waveform -> frames (log-mel fbank, HF SSL encoder, ESPnet ASR encoder)
* :mod:`.kmeans`: the k-means codebook (faiss), saved as safetensors + JSON
* :mod:`.discrete_units`: ``UnitExtractor`` and the ESPnet frontend ``discrete_units``
* :mod:`.unit_quality`: evidence that units carry content (edit distances vs transcripts)

Importing this package is cheap; the submodules import torch/faiss/espnet.
"""
