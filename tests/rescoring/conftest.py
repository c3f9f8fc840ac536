"""Tiny local LLM dirs for the rescoring tests: a text-only LM and a speech+text LM whose
tokenizer has the unit tokens (added as special tokens, embeddings resized)."""

import pytest
from rescoring_tiny_lm import build_tiny_lm_dirs


@pytest.fixture(scope="session")
def lm_dirs(tmp_path_factory):
    return build_tiny_lm_dirs(tmp_path_factory.mktemp("rescoring_lms"))
