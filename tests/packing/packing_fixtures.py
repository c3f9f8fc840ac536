"""A fabricated experiment to pack: config.yaml, a checkpoint holding trained parameters plus a
frozen-base reference, a base LLM directory, feature statistics and a kNN-LM datastore. Nothing
is built or trained: packing only reads these files. Used by tests/packing and the recipe's
packing-stage test."""

import json

import torch
import yaml


def make_experiment(root):
    from espnet_llm_plugin.core.base_weights import PATH_KEY, SHA256_KEY, _bytes_to_tensor, base_content_hash
    from espnet_llm_plugin.retrieval.datastore import FORMAT

    llm = root / "models" / "tiny_llm"
    llm.mkdir(parents=True)
    (llm / "model.safetensors").write_bytes(b"base weights v1")
    (llm / "tokenizer.json").write_text("{}")
    (llm / "tokenizer_config.json").write_text("{}")
    stats = root / "exp" / "asr_stats" / "feats_stats.npz"
    stats.parent.mkdir(parents=True)
    stats.write_bytes(b"stats")
    ds = root / "exp" / "datastore"
    ds.mkdir()
    (ds / "manifest.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "key_encoder": {"model_path": str(llm), "layer": -1},
                "hidden_size": 4,
                "metric": "l2",
                "count": 7,
                "index": "Flat",
            }
        )
    )
    (ds / "index.faiss").write_bytes(b"index")
    exp = root / "exp" / "asr"
    exp.mkdir()
    config = {
        "output_dir": str(exp),
        "token_list": ["<blank>", "a", "b"],
        "token_type": "hugging_face",
        "bpemodel": str(llm),
        "encoder": "transformer",
        "decoder": "llm",
        "model": "llm_asr",
        "decoder_conf": {"llm_path": str(llm), "prompt": "the"},
        "normalize": "global_mvn",
        "normalize_conf": {"stats_file": str(stats)},
        "train_data_path_and_name_and_type": [[str(root / "dump" / "train" / "wav.scp"), "speech", "sound"]],
        "best_model_criterion": [["valid", "acc", "max"]],
    }
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    state = {
        "decoder.lora.weight": torch.arange(6.0).reshape(2, 3),
        "decoder." + SHA256_KEY: _bytes_to_tensor(bytes.fromhex(base_content_hash(llm))),
        "decoder." + PATH_KEY: _bytes_to_tensor(str(llm).encode()),
    }
    torch.save(state, exp / "valid.acc.ave.pth")
    (root / "decode.yaml").write_text(yaml.safe_dump({"beam_size": 3, "knnlm_datastore": str(ds), "knnlm_weight": 0.3}))
    (root / "RESULTS.md").write_text(f"# RESULTS\n|test|12.5|\n(from {exp}/decode)\n")
    return {"root": root, "llm": llm, "exp": exp, "ds": ds, "stats": stats}
