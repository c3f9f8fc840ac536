"""local/real_speech.sh: the shared real recordings with transcripts as a Kaldi data dir."""

import os
import subprocess


def _run(recipe, real_speech):
    env = dict(os.environ, REAL_SPEECH=str(real_speech))
    return subprocess.run(["local/real_speech.sh"], cwd=recipe, capture_output=True, text=True, env=env, timeout=60)


def test_transcribed_recordings_become_a_data_dir(tmp_path, make_recipe, real_speech_dir):
    r = make_recipe(tmp_path, {})
    proc = _run(r, real_speech_dir)
    assert proc.returncode == 0, proc.stderr
    d = r / "data" / "real_speech"
    texts = dict(line.split(" ", 1) for line in (d / "text").read_text().splitlines())
    wavs = dict(line.split(" ", 1) for line in (d / "wav.scp").read_text().splitlines())
    expected = dict(line.split(" ", 1) for line in (real_speech_dir / "text").read_text().splitlines() if line)
    assert texts == expected and set(wavs) == set(expected)
    for utt, path in wavs.items():  # the original files, whatever their format
        assert os.path.isabs(path) and os.path.basename(path).startswith(utt + ".") and os.path.isfile(path)
    assert sorted(texts) == list(texts)  # Kaldi order
    assert "transcribed recordings -> data/real_speech" in proc.stdout


def test_a_transcript_without_audio_is_named(tmp_path, make_recipe):
    r = make_recipe(tmp_path, {})
    src = tmp_path / "rs"
    (src / "audio").mkdir(parents=True)
    (src / "audio" / "a1.flac").write_bytes(b"")
    (src / "text").write_text("a1 HELLO\nb2 WORLD\n")
    proc = _run(r, src)
    assert proc.returncode != 0 and "names b2, but no audio/b2.* exists" in proc.stderr
    missing = _run(r, tmp_path / "nowhere")
    assert missing.returncode != 0 and "set REAL_SPEECH" in missing.stderr
