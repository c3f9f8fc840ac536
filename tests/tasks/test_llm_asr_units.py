"""LlmASRTask: the optional ``units`` data entry (decoding only) is loaded as ids."""

import argparse

import numpy as np
import pytest


def test_units_is_an_inference_data_name(tmp_path):
    import soundfile as sf

    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    assert "units" in LlmASRTask.optional_data_names(train=False, inference=True)
    assert "units" not in LlmASRTask.optional_data_names(train=True)
    for utt in ("u1", "u2"):
        sf.write(tmp_path / f"{utt}.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\nu2 {tmp_path / 'u2.wav'}\n")
    (tmp_path / "units").write_text("u1 3 1 4\nu2 5\n")
    entries = [(str(tmp_path / "wav.scp"), "speech", "sound"), (str(tmp_path / "units"), "units", "text_int")]
    loader = LlmASRTask.build_streaming_iterator(
        entries,
        batch_size=2,
        collate_fn=LlmASRTask.build_collate_fn(argparse.Namespace(), False),
        inference=True,
        preprocess_fn=None,
        allow_variable_data_keys=False,
        dtype="float32",
    )
    keys, batch = next(iter(loader))
    assert list(keys) == ["u1", "u2"]
    assert batch["units"].tolist() == [[3, 1, 4], [5, -1, -1]]
    # training data loaders do not accept it (only decoding uses units)
    with pytest.raises(RuntimeError, match="units"):
        LlmASRTask.build_streaming_iterator(
            entries,
            batch_size=2,
            collate_fn=LlmASRTask.build_collate_fn(argparse.Namespace(), False),
            inference=False,
            preprocess_fn=None,
            allow_variable_data_keys=False,
            dtype="float32",
        )
