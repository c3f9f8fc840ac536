"""Tests for espnet_llm_plugin.corpus.release: safe tar/zip extraction, download errors and
the locate-or-download step shared by the corpus modules."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.corpus.release import (
    ReleaseError,
    UnsafeArchiveError,
    download_release,
    extracted_release,
    find_or_download,
    open_first_audio,
    safe_extract,
    safe_extract_zip,
    write_data_dirs,
)
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir


class CorpusError(ValueError):
    pass


class CorpusDownloadError(CorpusError):
    pass


def _targz(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_safe_extract(tmp_path):
    good = _targz(tmp_path / "good.tar.gz", {"an4/etc/a.txt": b"hello", "an4/b.txt": b"b"})
    safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "an4" / "etc" / "a.txt").read_bytes() == b"hello"

    evil = _targz(tmp_path / "evil.tar.gz", {"an4/ok.txt": b"ok", "../evil": b"pwned"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil'"):
        safe_extract(evil, tmp_path / "out2")
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "out2" / "an4").exists()  # nothing extracted at all

    absolute = _targz(tmp_path / "abs.tar.gz", {str(tmp_path / "abs_evil"): b"x"})
    with pytest.raises(UnsafeArchiveError):
        safe_extract(absolute, tmp_path / "out3")
    assert not (tmp_path / "abs_evil").exists()

    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("an4/escape")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tar.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(link, tmp_path / "out4")

    hop = tmp_path / "hop.tar.gz"  # a harmless-looking link, then a path through it
    with tarfile.open(hop, "w:gz") as tar:
        info = tarfile.TarInfo("an4/here")
        info.type, info.linkname = tarfile.SYMTYPE, "."
        tar.addfile(info)
        info = tarfile.TarInfo("an4/here/../../hop_evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError, match="hop_evil"):
        safe_extract(hop, tmp_path / "out6" / "deep")
    assert not (tmp_path / "out6" / "hop_evil").exists()

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ReleaseError, match="damaged or incomplete"):
        safe_extract(broken, tmp_path / "out5")


def test_safe_extract_zip(tmp_path, make_zip):
    safe_extract_zip(make_zip(tmp_path / "ok.zip", {"a/b.txt": b"x"}), tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"x"
    evil = make_zip(tmp_path / "evil.zip", {"a/ok.txt": b"x", "../evil.txt": b"y"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil\.txt'"):
        safe_extract_zip(evil, tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out2" / "a").exists()
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ReleaseError, match="damaged or incomplete"):
        safe_extract_zip(tmp_path / "bad.zip", tmp_path / "out3")


def test_download_release_names_url_and_offline_hint(tmp_path):
    url = (tmp_path / "nonexistent.tar.gz").as_uri()
    with pytest.raises(CorpusDownloadError, match=r"could not download .*set CORPUS=x in db\.sh"):
        download_release(url, tmp_path / "dl" / "a.tar.gz", CorpusDownloadError, "set CORPUS=x in db.sh")
    assert list((tmp_path / "dl").iterdir()) == []


def test_extracted_release(tmp_path):
    src = _targz(tmp_path / "src.tar.gz", {"c/a.txt": b"a"})
    archive = tmp_path / "dl" / "c.tar.gz"
    with extracted_release(src.as_uri(), archive, CorpusError, CorpusDownloadError, "hint") as tmp:
        assert (tmp / "c" / "a.txt").read_bytes() == b"a"
    assert not tmp.exists() and archive.is_file()
    # a damaged fresh download is not kept; the corpus's own error class is raised
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(src.read_bytes()[:40])
    archive2 = tmp_path / "dl" / "bad.tar.gz"
    with pytest.raises(CorpusError, match="damaged or incomplete"):
        with extracted_release(bad.as_uri(), archive2, CorpusError, CorpusDownloadError, "hint"):
            pass
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["c.tar.gz"]


def test_find_or_download(tmp_path):
    def find(root: Path) -> Path:
        if not (root / "ok").is_file():
            raise CorpusError(f"{root}/ok is missing; get it")
        return root

    (tmp_path / "ok").write_text("")
    fetched = tmp_path / "fetched"
    assert find_or_download(tmp_path, False, find, lambda: fetched, CorpusError, "none") == tmp_path
    assert find_or_download(tmp_path / "x", True, find, lambda: fetched, CorpusError, "none") == fetched
    assert find_or_download(None, True, find, lambda: fetched, CorpusError, "none") == fetched
    with pytest.raises(CorpusError, match="ok is missing"):
        find_or_download(tmp_path / "x", False, find, lambda: fetched, CorpusError, "none")
    with pytest.raises(CorpusError, match="no root given"):
        find_or_download(None, False, find, lambda: fetched, CorpusError, "no root given")


def test_open_first_audio_and_write_data_dirs(tmp_path):
    wav = tmp_path / "a.wav"
    soundfile.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    utts = [
        SimpleNamespace(utt_id="s1-a", words="HELLO", speaker="s1", audio=wav),
        SimpleNamespace(utt_id="s2-b", words="", speaker="s2", audio=tmp_path / "missing.wav"),
    ]
    sets = {"train": utts[:1], "empty": [], "bad": utts[1:]}
    with pytest.raises(CorpusError, match=r"utterance 's2-b': cannot read .*missing\.wav"):
        open_first_audio(sets, lambda u: u.audio, CorpusError)
    assert open_first_audio({"train": utts[:1], "empty": []}, lambda u: u.audio, CorpusError) == {"train": 16000}
    counts = write_data_dirs(tmp_path / "data", {"train": utts}, lambda u: str(u.audio))
    assert counts == {"train": 2}
    d = load_data_dir(tmp_path / "data" / "train")
    assert d.text == {"s1-a": "HELLO", "s2-b": ""} and d.utt2spk["s2-b"] == "s2"
