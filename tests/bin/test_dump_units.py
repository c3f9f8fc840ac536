"""dump_units end to end: single process, --nj workers, --job/--key_file parts + --merge,
resuming, short audio."""

import sys
from pathlib import Path

import pytest

from espnet_llm_plugin.bin.dump_units import main
from espnet_llm_plugin.bin.split_scp import split_scp
from espnet_llm_plugin.fileio.unit_file import read_units
from espnet_llm_plugin.frontend.discrete_units import UnitExtractor
from espnet_llm_plugin.frontend.unit_features import UtteranceAudio

sys.path.insert(0, str(Path(__file__).parent))
from test_train_kmeans import make_wav_dir  # noqa: E402

from espnet_llm_plugin.bin.train_kmeans import main as train_main  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    data = make_wav_dir(tmp_path / "data", n=6, short=True)
    km = tmp_path / "km"
    train_main(["--data_dir", str(data), "--n_mels", "20", "--num_units", "8", "--out_dir", str(km), "--device", "cpu"])
    return data, km


def test_dump_matches_extractor_and_resumes(setup, tmp_path):
    data, km = setup
    out = tmp_path / "units"
    main(
        [
            "--data_dir",
            str(data),
            "--kmeans_dir",
            str(km),
            "--out",
            str(out),
            "--short_audio",
            "empty",
            "--device",
            "cpu",
        ]
    )
    units = read_units(out, num_units=8)
    audio, ue = UtteranceAudio([data]), UnitExtractor(km)
    assert list(units) == sorted(units) and units["tiny"] == []
    assert units["utt03"] == ue.units(audio.read("utt03"), "utt03")
    mtime = out.stat().st_mtime_ns
    main(["--data_dir", str(data), "--kmeans_dir", str(km), "--out", str(out), "--short_audio", "empty"])
    assert out.stat().st_mtime_ns == mtime  # complete: skipped
    # dedup and parallel workers give the de-duplicated version of the same units
    out2 = tmp_path / "units_dedup"
    main(
        [
            "--data_dir",
            str(data),
            "--kmeans_dir",
            str(km),
            "--out",
            str(out2),
            "--dedup",
            "true",
            "--nj",
            "2",
            "--short_audio",
            "empty",
            "--device",
            "cpu",
        ]
    )
    dd = read_units(out2)
    assert set(dd) == set(units) and not (tmp_path / "units_dedup.work").exists()
    assert all(x != y for seq in dd.values() for x, y in zip(seq, seq[1:]))
    assert dd["utt03"] == [u for i, u in enumerate(units["utt03"]) if i == 0 or units["utt03"][i - 1] != u]


def test_job_parts_and_merge(setup, tmp_path):
    data, km = setup
    parts = []
    for j in (1, 2, 3):
        parts.append(tmp_path / f"units.{j}")
        main(
            [
                "--data_dir",
                str(data),
                "--kmeans_dir",
                str(km),
                "--out",
                str(parts[-1]),
                "--job",
                f"{j}/3",
                "--short_audio",
                "empty",
            ]
        )
    n = split_scp(data / "wav.scp", tmp_path / "split", 2)
    for j in range(1, n + 1):
        main(
            [
                "--data_dir",
                str(data),
                "--kmeans_dir",
                str(km),
                "--out",
                str(tmp_path / f"k.{j}"),
                "--key_file",
                str(tmp_path / "split" / f"keys.{j}.scp"),
                "--short_audio",
                "empty",
            ]
        )
    main(["--data_dir", str(data), "--merge", *map(str, parts), "--out", str(tmp_path / "a")])
    main(
        ["--data_dir", str(data), "--merge", str(tmp_path / "k.1"), str(tmp_path / "k.2"), "--out", str(tmp_path / "b")]
    )
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()
    assert len(read_units(tmp_path / "a")) == 7
    with pytest.raises(SystemExit, match="3 missing"):
        main(["--data_dir", str(data), "--merge", *map(str, parts[:2]), "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


def test_errors_name_the_utterance(setup, tmp_path):
    data, km = setup
    out = tmp_path / "units"
    with pytest.raises(SystemExit, match="tiny"):
        main(["--data_dir", str(data), "--kmeans_dir", str(km), "--out", str(out)])
    assert not out.exists()
    (data / "wav" / "utt02.wav").write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="utt02"):
        main(["--data_dir", str(data), "--kmeans_dir", str(km), "--out", str(out), "--short_audio", "empty"])
    (km / "kmeans.json").unlink()
    with pytest.raises(SystemExit, match="kmeans.json"):
        main(["--data_dir", str(data), "--kmeans_dir", str(km), "--out", str(out)])
