"""LlmASRTask with an LLM decoder's text form: transcripts are tokenised in the LLM's form,
decoded text is mapped back to the recipe's, and the recipe's case is read from its data."""

import pytest
from tiny_models import save_tiny_llm


def _args(llm_dir, tmp_path, *extra):
    from espnet_llm_plugin.bin.make_token_list import hf_token_list
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(hf_token_list(llm_dir)) + "\n")
    return LlmASRTask.get_parser().parse_args(
        [
            "--token_list",
            str(tokens),
            "--token_type",
            "hugging_face",
            "--bpemodel",
            str(llm_dir),
            "--decoder",
            "llm",
            "--decoder_conf",
            f"llm_path={llm_dir}",
            "--output_dir",
            str(tmp_path / "exp"),
            *extra,
        ]
    )


def _train_text(tmp_path, lines):
    path = tmp_path / "text"
    path.write_text("".join(f"utt{i} {line}\n" for i, line in enumerate(lines)))
    return ["--train_data_path_and_name_and_type", f"{path},text,text"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    return save_tiny_llm(
        tmp_path_factory.mktemp("llm"),
        ["<unk>", "<s>", "</s>", "the", "cat", "THE", "CAT"],
        special_tokens=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )


def test_without_llm_usage_the_transcript_is_tokenised_as_written(tiny_llm, tmp_path):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask, recipe_case_options

    args = _args(tiny_llm, tmp_path, *_train_text(tmp_path, ["THE CAT"]))
    out = LlmASRTask.build_preprocess_fn(args, train=True)("u", {"text": "THE CAT"})
    assert out["text"].tolist() == [5, 6]
    assert recipe_case_options(args) == []  # identity form: nothing to map back


def test_text_form_option_changes_what_is_tokenised(tiny_llm, tmp_path):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    args = _args(tiny_llm, tmp_path, "--decoder_conf", "text_form={case: lower}")
    out = LlmASRTask.build_preprocess_fn(args, train=True)("u", {"text": "THE CAT"})
    assert out["text"].tolist() == [3, 4]


@pytest.mark.parametrize("lines, case", [(["THE CAT", ""], "upper"), (["the cat"], "lower"), (["The cat"], "as_is")])
def test_recipe_case_is_read_from_the_training_text(tiny_llm, tmp_path, lines, case):
    from espnet_llm_plugin.tasks.llm_asr import recipe_case_options

    args = _args(tiny_llm, tmp_path, "--decoder_conf", "text_form={case: lower}", *_train_text(tmp_path, lines))
    assert recipe_case_options(args) == ["--decoder_conf", f"text_form.recipe_case={case}"]
    given = _args(
        tiny_llm,
        tmp_path,
        "--decoder_conf",
        "text_form={case: lower, recipe_case: as_is}",
        *_train_text(tmp_path, lines),
    )
    assert recipe_case_options(given) == []  # stated in the config: kept


@pytest.mark.real_model
def test_smollm2_reads_sentence_case_and_decoded_text_comes_back_upper_case(smollm2_dir, tmp_path):
    """Issue 14.3: the recipe's UPPER CASE is SmolLM2's worst form (word perplexity 12,300 vs
    827 in sentence case); what it reads is the measured form, what is scored the recipe's."""
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.hugging_face_token_id_converter import HuggingFaceTokenIDConverter

    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
    from espnet_llm_plugin.decoding.speech2text import recipe_form_results
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask, recipe_case_options

    recipe = "I THINK IT'S FINE AND I'LL GO"
    args = _args(smollm2_dir, tmp_path, *_train_text(tmp_path, [recipe, "THE CAT SAT"]))
    extra = recipe_case_options(args)
    assert extra == ["--decoder_conf", "text_form.recipe_case=upper"]
    args = _args(smollm2_dir, tmp_path, *_train_text(tmp_path, [recipe]), *extra)
    ids = LlmASRTask.build_preprocess_fn(args, train=True)("u", {"text": recipe})["text"].tolist()

    # as ESPnet's Speech2Text turns ids into text for token_type hugging_face
    tokenizer = build_tokenizer("hugging_face", bpemodel=str(smollm2_dir))
    converter = HuggingFaceTokenIDConverter(model_name_or_path=str(smollm2_dir))
    read = tokenizer.tokens2text(converter.ids2tokens(ids))
    assert read.startswith("I think it's fine and I'll go"), read  # sentence case, not the recipe's

    # decoding: the LLM writes that form; the text files get the recipe's
    decoder = LlmDecoder(
        vocab_size=converter.get_num_vocabulary_size(), encoder_output_size=576, finetune="frozen", **args.decoder_conf
    )
    hyp = [(read, converter.ids2tokens(ids), ids, None)]
    assert recipe_form_results(hyp, decoder)[0][0] == recipe
