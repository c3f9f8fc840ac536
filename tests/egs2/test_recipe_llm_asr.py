"""LLM-ASR through the recipe: stage 5 trains a small causal LM (saved with save_pretrained),
its tokenizer becomes the token list, stage 11 trains encoder -> Conv1d+MLP adapter -> LLM
decoder (LoRA) with DDP over 2 CPU processes, stage 12 decodes with ESPnet's beam search over the KV-cached LLM scorer.
"""

import json
import re
import subprocess

import pytest

TINY_LLM_ASR = """
frontend_conf: {n_fft: 512, hop_length: 320, n_mels: 40}
normalize: global_mvn
encoder: transformer
encoder_conf: {output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 1, input_layer: conv2d}
postencoder: conv1d_mlp_adapter
postencoder_conf: {output_size: 32, num_conv_layers: 1, stride: 2}
decoder: llm
decoder_conf: {prompt: "transcribe", finetune: lora, lora_r: 4, lora_alpha: 8}
model_conf: {ctc_weight: 0.0, sym_sos: "</s>", sym_eos: "</s>"}
optim: adam
optim_conf: {lr: 0.002}
batch_type: folded
batch_size: 8
max_epoch: 1
num_workers: 0
num_att_plot: 0
best_model_criterion: [[valid, acc, max]]
keep_nbest_models: 1
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.espeak,
]


def test_llm_asr_recipe_end_to_end(tmp_path, make_recipe, recipe_env):
    r = make_recipe(
        tmp_path,
        {
            "llm.yaml": TINY_LLM_ASR,
            "beam.yaml": "beam_size: 2\nctc_weight: 0.0\nno_repeat_ngram_size: 2\n",
            "knn.yaml": "beam_size: 2\nctc_weight: 0.0\nknnlm_datastore: exp/datastore_target_text_text_lm\n"
            "knnlm_lambda: 0.5\nknnlm_k: 4\n",
        },
    )
    proc = subprocess.run(
        [
            "./llm_asr.sh",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--test_sets",
            "test test_noise",
            "--nj",
            "2",
            "--inference_nj",
            "1",
            "--token_type",
            "hugging_face",
            "--speed_perturb_factors",
            "0.9 1.0",
            "--cpu_procs",
            "2",
            "--asr_config",
            "llm.yaml",
            "--inference_config",
            "beam.yaml",
            "--nbest",
            "2",
            "--local_data_opts",
            "--num_train 24 --num_dev 4 --num_test 3 --num_target_test 2 "
            "--num_noise_train 2 --num_noise_dev 1 --num_noise_test 2 --num_passages 3 --num_target_text 10 "
            "--num_target_dev 1 --num_target_memory 3",
            "--datastore_memory",
            "data/local/target_text.txt",
            "--datastore_args",
            "--window 8",
            "--unit_feature_type",
            "fbank",
            "--num_units",
            "8",
            "--unit_max_frames",
            "5000",
            "--mmlm_args",
            "--max_steps 4 --batch_size 4 --seq_len 64 --eval_every 2 --save_every 2",
            "--contrastive_args",
            "--max_steps 3 --batch_size 4",
            "--lm_args",
            "--vocab_size 300 --hidden_size 32 --num_layers 1 --num_heads 2 --max_steps 20 "
            "--batch_size 8 --seq_len 32 --eval_every 10 --save_every 10",
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=900,
        env=recipe_env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train_sp = (r / "dump" / "raw" / "train_sp" / "wav.scp").read_text().splitlines()
    assert len(train_sp) == 2 * 26 and sum(line.startswith("sp0.9-") for line in train_sp) == 26
    assert (r / "exp" / "asr_stats_hf_text_lm_sp" / "logs").is_dir()
    llm = r / "exp" / "text_lm"
    assert (llm / "config.json").is_file() and list(llm.glob("*.safetensors"))
    tokens = (r / "data" / "token_list" / "hf_text_lm" / "tokens.txt").read_text().split("\n")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(llm))
    assert tokens[: len(tok)] == tok.convert_ids_to_tokens(list(range(len(tok))))
    config = (r / "exp" / "asr_llm" / "config.yaml").read_text()
    assert "decoder: llm" in config and f"llm_path: {llm.relative_to(r)}" in config
    res = json.loads(
        (r / "exp" / "asr_llm" / "decode_beam_valid.acc.ave" / "test" / "score" / "result.json").read_text()
    )
    assert res["wer"]["utterances"] == 3 and res["missing_hypotheses"] == 0
    assert "asr_llm" in (r / "exp" / "RESULTS.md").read_text()
    # stage 11 trained with DDP over 2 CPU processes (gloo), through torchrun and ESPnet's own
    # distributed options; both ranks registered our components
    train_log = (r / "exp" / "asr_llm" / "logs" / "train.log").read_text()
    assert "torch.distributed.run" in train_log
    # ESPnet prefixes rank 0's log lines with host:rank/world_size (other ranks log warnings
    # only); finishing at all needs both ranks in gloo's collectives
    assert re.search(r"\[\S+:0/2\] .*training was finished", train_log), train_log[-2000:]
    # stage 6: units for every set; stage 7: speech+text LM loadable like any HF model;
    # stage 8: Recall@k and text perplexity in RESULTS.md
    units = (r / "exp" / "units_fbank8" / "test" / "units").read_text().splitlines()
    assert len(units) == 3 and all(int(u) < 8 for line in units for u in line.split()[1:])
    assert (r / "exp" / "units_fbank8" / "test" / "quality.json").is_file()
    from transformers import AutoModelForCausalLM

    mm_tok = AutoTokenizer.from_pretrained(str(r / "exp" / "mmlm_fbank8" / "contrastive"))
    assert len(mm_tok) == len(tok) + 2 + 8 and mm_tok.convert_tokens_to_ids("<unit_7>") >= len(tok)
    AutoModelForCausalLM.from_pretrained(str(r / "exp" / "mmlm_fbank8" / "lm"))
    results = (r / "exp" / "RESULTS.md").read_text()
    assert "mmlm_fbank8_contrastive" in results and "## Text perplexity" in results
    assert "text_lm_test" in results and "lm_test" in results
    # stage 9: a kNN-LM datastore of the target-domain text, keyed by the LLM; decoding with it
    manifest = json.loads((r / "exp" / "datastore_target_text_text_lm" / "manifest.json").read_text())
    assert manifest["count"] > 0
    knn = subprocess.run(
        [
            "./llm_asr.sh",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--test_sets",
            "test",
            "--token_type",
            "hugging_face",
            "--asr_config",
            "llm.yaml",
            "--inference_nj",
            "1",
            "--stage",
            "12",
            "--stop_stage",
            "13",
            "--inference_config",
            "knn.yaml",
            "--nbest",
            "2",
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=600,
        env=recipe_env,
    )
    assert knn.returncode == 0, knn.stdout[-3000:] + knn.stderr[-3000:]
    knn_log = (r / "exp" / "asr_llm" / "decode_knn_valid.acc.ave" / "test" / "logs" / "decode.1.log").read_text()
    assert "added beam-search scorer knnlm" in knn_log, knn_log[-2000:]
    assert "decode_knn_valid.acc.ave" in (r / "exp" / "RESULTS.md").read_text()
    # no_repeat_ngram_size from the decode YAML reached ESPnet's beam search
    log = (r / "exp" / "asr_llm" / "decode_beam_valid.acc.ave" / "test" / "logs" / "decode.1.log").read_text()
    assert "added beam-search scorer no_repeat_ngram" in log and "BatchBeamSearch implementation" in log
    assert "decoded utterances: 3/3 (100%)" in log  # progress lines with an ETA in decode logs
    assert re.search(r"Stage 12 done in \d+ s -> ", proc.stdout)  # one-line summary per stage
    for line in (
        (r / "exp" / "asr_llm" / "decode_beam_valid.acc.ave" / "test" / "1best_recog" / "token_int")
        .read_text()
        .splitlines()
    ):
        ids = line.split()[1:]
        bigrams = list(zip(ids, ids[1:]))
        assert len(bigrams) == len(set(bigrams)), line
