"""pack_model / unpack_model end to end: a tiny LLM-ASR model trained by ESPnet's trainer (LoRA on a
tiny LLM) is packed, copied to a new directory tree, unpacked there against a copy of its base LLM,
and decoded by the README's three lines in a fresh Python process, with the hypotheses (text,
tokens, scores) the recipe's decoding CLI gave before packing. The original experiment and base
are moved away meanwhile, so nothing can be read from them."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml
from test_asr_train import prepare, train

# the lines of the README's "Use a trained model from Python" section (/tmp/s5/api_readme.md)
README_LINES = [
    "from espnet_llm_plugin import Speech2Text",
    'speech2text = Speech2Text.from_packed("model_dir")',
    'print(speech2text("utt1.wav")[0].text)',
]
# after them, the whole n-best of both utterances, to compare with the CLI's
DUMP_LINES = [
    "import json",
    'nbest = {u: [[h.text, h.token_int, h.score] for h in speech2text(f"{u}.wav")] for u in ("utt1", "utt2")}',
    'print("NBEST " + json.dumps(nbest))',
]
DECODE_YAML = "beam_size: 2\nctc_weight: 0.0\nlm_weight: 0.0\nmaxlenratio: 0.0\nno_repeat_ngram_size: 2\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack_exp")
    llm = prepare(root)
    train(root, llm, max_epoch=1)
    (root / "decode.yaml").write_text(DECODE_YAML)
    return root, llm


def _cli_nbest(out_dir, nbest):
    """``{utt: [[text, token_int, score], ...]}`` from asr_inference's output directory."""
    res = {}
    for n in range(1, nbest + 1):
        d = out_dir / f"{n}best_recog"

        def read(name):
            return dict((line.split(" ", 1) + [""])[:2] for line in (d / name).read_text().splitlines())

        text, ids, score = read("text"), read("token_int"), read("score")
        for utt in score:
            res.setdefault(utt, []).append(
                [text.get(utt, ""), [int(t) for t in ids[utt].split()], float(score[utt].strip("tensor()"))]
            )
    return res


def test_packed_model_decodes_elsewhere_like_before(trained, tmp_path):
    from espnet_llm_plugin.bin.asr_inference import main as decode
    from espnet_llm_plugin.bin.pack_model import main as pack
    from espnet_llm_plugin.bin.unpack_model import main as unpack

    root, llm = trained
    exp = root / "exp"
    decode(
        [
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.acc.ave.pth"),
            "--config",
            str(root / "decode.yaml"),
            "--nbest",
            "2",
            "--output_dir",
            str(root / "decode"),
            "--data_path_and_name_and_type",
            f"{root / 'valid' / 'wav.scp'},speech,sound",
        ]
    )
    before = _cli_nbest(root / "decode", 2)
    (root / "RESULTS.md").write_text(f"# RESULTS\n\n|dataset|WER|\n|---|---|\n|valid|99.0|\n\nfrom {root}/decode\n")

    zip_path = root / "asr_pack.zip"
    pack(
        [
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.acc.ave.pth"),
            "--decode_config",
            str(root / "decode.yaml"),
            "--decode_args",
            "--nbest 2",
            "--results",
            str(root / "RESULTS.md"),
            "--out",
            str(zip_path),
        ]
    )
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        assert {
            "pack.json",
            "README.md",
            "config.yaml",
            "model.safetensors",
            "tokens.txt",
            "decode.yaml",
            "tokenizer/tokenizer.json",
            "results/RESULTS.md",
        } <= names
        assert not any(n.endswith((".pth", ".pt", ".bin", ".pkl")) for n in names)  # no pickles
        for n in names:  # no path of this machine anywhere, weights included
            assert str(root).encode() not in z.read(n), n
        config = yaml.safe_load(z.read("config.yaml"))
        card = z.read("README.md").decode()
        meta = json.loads(z.read("pack.json"))
    assert config["decoder_conf"]["llm_path"] == "bases/llm" and config["bpemodel"] == "tokenizer"
    assert config["token_list"] == "tokens.txt"
    assert [b["name"] for b in meta["bases"]] == ["llm"] and meta["bases"][0]["keys"] == ["decoder_conf.llm_path"]
    assert "|valid|99.0|" in card and "Apache-2.0" in card and "base `llm`" in card

    # another tree: the pack, a copy of the base LLM, two wav files; the originals moved away
    elsewhere, models = tmp_path / "elsewhere", tmp_path / "models"
    elsewhere.mkdir()
    shutil.copy(zip_path, elsewhere / "asr_pack.zip")
    shutil.copytree(llm, models / "llm")
    for i, utt in enumerate(("dv0", "dv1"), 1):
        shutil.copy(root / "valid" / f"{utt}.wav", elsewhere / f"utt{i}.wav")
    unpack([str(elsewhere / "asr_pack.zip"), str(elsewhere / "model_dir"), "--base_dir", str(models)])
    assert os.path.realpath(elsewhere / "model_dir" / "bases" / "llm") == str((models / "llm").resolve())

    hidden = root.parent / (root.name + "_moved")
    os.rename(root, hidden)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "\n".join(README_LINES + DUMP_LINES)],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.rename(hidden, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    after = json.loads(next(line for line in lines if line.startswith("NBEST "))[6:])
    assert lines[0] == before["dv0"][0][0]  # the README's print: the 1-best text
    for utt, ref in (("utt1", before["dv0"]), ("utt2", before["dv1"])):
        assert [h[:2] for h in after[utt]] == [h[:2] for h in ref], utt
        assert [h[2] for h in after[utt]] == pytest.approx([h[2] for h in ref], abs=1e-3), utt


def test_unpack_refuses_a_base_llm_with_other_weights(trained, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from espnet_llm_plugin.bin.pack_model import main as pack
    from espnet_llm_plugin.bin.unpack_model import main as unpack
    from espnet_llm_plugin.core.base_weights import base_content_hash

    root, llm = trained
    pack(
        [
            "--asr_train_config",
            str(root / "exp" / "config.yaml"),
            "--asr_model_file",
            str(root / "exp" / "valid.acc.ave.pth"),
            "--out",
            str(tmp_path / "pack"),
        ]
    )
    other = tmp_path / "models" / "llm"
    model = AutoModelForCausalLM.from_pretrained(str(llm))
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    model.save_pretrained(other)
    want, have = base_content_hash(llm), base_content_hash(other)
    with pytest.raises(SystemExit, match=rf"unpack_model: error: .*{other}.*{have}.*{want}"):
        unpack([str(tmp_path / "pack"), str(tmp_path / "model_dir"), "--base_dir", str(other.parent)])
    assert not (tmp_path / "model_dir").exists()  # nothing half-unpacked
