"""LlmASRTask: the optional ``context`` data entry is tokenised with the LLM tokenizer and collated."""

import numpy as np
import pytest
from tiny_models import word_level_tokenizer

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "cat", "dog", "sat", "ran", "mat", "home"]
EOS = 3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import soundfile

    d = tmp_path_factory.mktemp("ctx_data")
    word_level_tokenizer(
        VOCAB, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    ).save_pretrained(d / "llm")
    rng = np.random.default_rng(0)
    wavs = []
    for utt, n in (("u1", 1600), ("u2", 800)):
        soundfile.write(d / f"{utt}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        wavs.append(f"{utt} {d / f'{utt}.wav'}")
    (d / "wav.scp").write_text("\n".join(wavs) + "\n")
    (d / "text").write_text("u1 cat sat\nu2 dog ran home\n")
    (d / "context").write_text("u1 cat sat on mat ||| dog ran home\nu2 dog\n")
    (d / "context_ids").write_text("u1 4 6 3 5\nu2 5\n")
    (d / "tokens.txt").write_text("\n".join(VOCAB) + "\n")
    return d


def task_args(d, extra=()):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    return LlmASRTask.get_parser().parse_args(
        [
            "--token_list",
            str(d / "tokens.txt"),
            "--output_dir",
            str(d / "exp"),
            "--token_type",
            "hugging_face",
            "--bpemodel",
            str(d / "llm"),
            "--use_preprocessor",
            "true",
            *extra,
        ]
    )


def load_batch(d, args, context_file, context_type):
    from espnet2.train.dataset import ESPnetDataset

    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    dataset = ESPnetDataset(
        [
            (str(d / "wav.scp"), "speech", "sound"),
            (str(d / "text"), "text", "text"),
            (str(d / context_file), "context", context_type),
        ],
        preprocess=LlmASRTask.build_preprocess_fn(args, train=True),
    )
    LlmASRTask.check_task_requirements(dataset, allow_variable_data_keys=False, train=True)
    collate = LlmASRTask.build_collate_fn(args, train=True)
    return collate([dataset["u1"], dataset["u2"]])


def test_context_text_is_tokenised_and_collated(data_dir):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    assert "context" in LlmASRTask.optional_data_names(train=True)
    assert "context" in LlmASRTask.optional_data_names(train=False, inference=True)
    keys, batch = load_batch(data_dir, task_args(data_dir), "context", "text")
    assert keys == ["u1", "u2"]
    # "cat sat on mat": "on" is not in the vocabulary -> <unk> (1); passages joined by eos
    assert batch["context"].tolist() == [[4, 6, 1, 8, EOS, 5, 7, 9], [5, -1, -1, -1, -1, -1, -1, -1]]
    assert batch["context_lengths"].tolist() == [8, 1]
    assert batch["text"].tolist() == [[4, 6, -1], [5, 7, 9]]


def test_pre_tokenised_context_ids_pass_through(data_dir):
    _, batch = load_batch(data_dir, task_args(data_dir), "context_ids", "text_int")
    assert batch["context"].tolist() == [[4, 6, EOS, 5], [5, -1, -1, -1]]


def test_decoder_llm_path_is_preferred_and_missing_tokenizer_is_named(data_dir):
    from espnet_llm_plugin.tasks.llm_asr import ContextPreprocessor, context_tokenizer_path

    args = task_args(data_dir, ["--decoder_conf", f"llm_path={data_dir / 'llm'}"])
    args.bpemodel = "elsewhere"
    assert context_tokenizer_path(args) == str(data_dir / "llm")
    with pytest.raises(ValueError, match="utterance 'u9'.*decoder_conf.llm_path"):
        ContextPreprocessor(None, None)("u9", {"context": "cat ||| dog"})
    out = ContextPreprocessor(None, None)("u9", {"context": np.array([4, 3, 5])})
    assert out["context"].tolist() == [4, 3, 5]
