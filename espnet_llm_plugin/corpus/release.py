"""Official corpus releases: download, safe extraction, and what every prepare_<corpus> CLI
shares (locate-or-download, the common options, error reporting).

Each corpus module (an4, librispeech, spoken_squad, slue_voxpopuli) keeps what is specific to
it (file layout, URLs, its own error class); the steps here are the same for all of them:

- ``download_file``: a URL to a file, through a temp file renamed into place when complete.
- ``download_release``: the same, with the offline advice (copy the file here, or set the
  db.sh variable) and the corpus's own error class.
- ``safe_extract`` / ``safe_extract_zip``: tar / zip extraction that refuses members landing
  outside the destination.
- ``extracted_release``: download an archive if missing, extract it into a temp directory
  beside it (a damaged fresh download is deleted), yield that directory, clean up.
- ``find_or_download``: the corpus root given on the command line, else downloaded.
- ``open_first_audio`` / ``write_data_dirs``: the last steps of prepare_<corpus>: a quick
  audio check per set, then one Kaldi data directory per set, each replaced atomically.
- ``release_parser`` / ``run_prepare``: the common options and the main() body of the CLIs.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Type

import soundfile

from espnet_llm_plugin.cli_args import cli_parser, str2bool
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.fileio.kaldi_data import DataDir, DataDirError

logger = logging.getLogger(__name__)


class ReleaseError(ValueError):
    """An archive that cannot be used as it is (damaged, incomplete, unsafe)."""


class ReleaseDownloadError(ReleaseError):
    """A file of a release could not be downloaded."""


class UnsafeArchiveError(ReleaseError):
    """An archive member that would land outside the extraction directory."""


# --------------------------------------------------------------------------- download


def download_file(url: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temp file renamed into place when complete.

    Raises:
        ReleaseDownloadError: naming the URL and the reason; no partial file is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = resp.headers.get("Content-Length")
                    total = int(total) if total and total.isdigit() else None
                    got, next_report = 0, 0.1
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        got += len(chunk)
                        if total and got / total >= next_report:
                            logger.info("downloading %s: %d%% of %.1f MB", url, int(100 * got / total), total / 1e6)
                            next_report += 0.1
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise ReleaseDownloadError(f"could not download {url}: {reason}") from e
            if total is not None and got != total:
                raise ReleaseDownloadError(f"could not download {url}: connection closed after {got} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


def download_release(
    url: str,
    dest: Path,
    error: Type[ValueError],
    db_hint: str,
    timeout: float = 60.0,
) -> Path:
    """``download_file`` raising ``error`` with what to do without internet access.

    Args:
        db_hint: the offline alternative, e.g. "set AN4=<the directory containing an4/> in
            db.sh"; it follows "copy it to <dest>, or".
    """
    try:
        return download_file(url, dest, timeout=timeout)
    except ReleaseDownloadError as e:
        raise error(
            f"{e}. Without internet access here, download {url} on another machine, copy it "
            f"to {dest} (or {db_hint}), and run again"
        ) from e.__cause__


# --------------------------------------------------------------------------- extract


def _check_members(tar: tarfile.TarFile, dest: Path) -> List[tarfile.TarInfo]:
    dest = dest.resolve()

    def inside(p: Path) -> bool:
        return p == dest or dest in p.parents

    members = tar.getmembers()
    for m in members:
        target = (dest / m.name).resolve()
        if os.path.isabs(m.name) or ".." in Path(m.name).parts or not inside(target):
            raise UnsafeArchiveError(
                f"{tar.name}: refusing to extract member {m.name!r}: it would be written outside {dest}"
            )
        if m.issym():
            link = (target.parent / m.linkname).resolve()
            if os.path.isabs(m.linkname) or not inside(link):
                raise UnsafeArchiveError(
                    f"{tar.name}: refusing symlink {m.name!r} -> {m.linkname!r}: it points outside {dest}"
                )
        elif m.islnk():
            if os.path.isabs(m.linkname) or not inside((dest / m.linkname).resolve()):
                raise UnsafeArchiveError(
                    f"{tar.name}: refusing hard link {m.name!r} -> {m.linkname!r}: it points outside {dest}"
                )
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{tar.name}: refusing member {m.name!r}: not a regular file or directory")
    return members


_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def _damaged(archive: Path, e: BaseException) -> ReleaseError:
    return ReleaseError(
        f"{archive}: cannot extract ({e}); the archive is damaged or incomplete - delete it and download it again"
    )


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a tar(.gz) into ``dest`` after checking every member stays inside it.

    Nothing is extracted if any member is unsafe (absolute path, ``..``, a link pointing
    out, a device or fifo).

    Raises:
        UnsafeArchiveError: naming the member.
        ReleaseError: an archive that is not a readable tar file.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _check_members(tar, dest)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: belt and braces
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - old Python
                tar.extractall(dest, members=members)
    except _FILTER_ERRORS as e:
        raise UnsafeArchiveError(f"{archive}: refusing to extract: {e}") from e
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _damaged(archive, e) from e


def safe_extract_zip(archive: str | Path, dest: str | Path) -> None:
    """Extract a zip into ``dest`` after checking every member stays inside it (no absolute
    paths, no ``..``); nothing is extracted if one member is unsafe.

    Raises:
        UnsafeArchiveError: naming the member.
        ReleaseError: a damaged archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                name = info.filename
                target = (root / name).resolve()
                if (
                    name.startswith(("/", "\\"))
                    or re.match(r"^[A-Za-z]:", name)
                    or ".." in Path(name).parts
                    or not (target == root or root in target.parents)
                ):
                    raise UnsafeArchiveError(
                        f"{archive}: refusing to extract member {name!r}: it would be written outside {dest}"
                    )
            zf.extractall(dest, members=infos)
    except (zipfile.BadZipFile, EOFError) as e:
        raise _damaged(archive, e) from e


@contextmanager
def extracted_release(
    url: str,
    archive: Path,
    error: Type[ValueError],
    download_error: Type[ValueError],
    db_hint: str,
    timeout: float = 60.0,
    extract: Callable[[Path, Path], None] = safe_extract,
) -> Iterator[Path]:
    """Download ``archive`` from ``url`` unless it is there, extract it into a temp directory
    beside it and yield that directory; it is removed on exit, so move out what you keep.

    A fresh download that does not extract is deleted (not kept for the next run).

    Raises:
        download_error: the download failed (with ``db_hint``).
        error: the archive is damaged or unsafe.
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    fresh = False
    if archive.is_file():
        logger.info("using existing archive %s", archive)
    else:
        logger.info("downloading %s to %s", url, archive)
        download_release(url, archive, download_error, db_hint, timeout=timeout)
        fresh = True
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extract", dir=archive.parent))
    try:
        logger.info("extracting %s", archive)
        try:
            extract(archive, tmp)
        except ReleaseError as e:
            if fresh:
                archive.unlink(missing_ok=True)
            raise error(str(e)) from e
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, target: Path) -> None:
    """Move the complete directory ``src`` to ``target``, replacing what is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(src, target)


# --------------------------------------------------------------------------- locate


def find_or_download(
    root: Optional[str | Path],
    download: bool,
    find: Callable[[Path], Path],
    fetch: Callable[[], Path],
    error: Type[ValueError],
    missing_root: str,
) -> Path:
    """The corpus root: ``find(root)`` when it is there, else ``fetch()`` when ``download``.

    Args:
        find: checks a root, raising ``error`` (whose text up to ';' says what is missing).
        fetch: downloads and extracts, returning the root.
        missing_root: the message when neither a root nor ``download`` is given.
    """
    if root is not None:
        try:
            return find(Path(root))
        except error as e:
            if not download:
                raise
            logger.info("%s; downloading", str(e).split(";")[0])
    elif not download:
        raise error(missing_root)
    return fetch()


# --------------------------------------------------------------------------- data dirs


def open_first_audio(
    sets: Mapping[str, Sequence[Any]], audio_of: Callable[[Any], Path], error: Type[ValueError]
) -> Dict[str, int]:
    """Open the first audio file of every non-empty set with libsndfile (a wrong root or a
    broken extraction shows here, before anything is written); returns set -> sample rate.

    Utterances have ``utt_id``; ``audio_of(utt)`` is its audio file.

    Raises:
        error: naming the utterance and the file.
    """
    rates = {}
    for name, utts in sets.items():
        if not utts:
            continue
        first = utts[0]
        try:
            rates[name] = soundfile.info(str(audio_of(first))).samplerate
        except Exception as e:  # LibsndfileError / RuntimeError
            raise error(f"utterance '{first.utt_id}': cannot read {audio_of(first)} ({e})") from e
    return rates


def write_data_dirs(
    data_dir: str | Path, sets: Mapping[str, Sequence[Any]], wav_of: Callable[[Any], str]
) -> Dict[str, int]:
    """Write ``<data_dir>/<name>`` (wav.scp, text, utt2spk, spk2utt) for every set, each
    replaced atomically; returns utterances per set.

    Utterances have ``utt_id``, ``words`` and ``speaker``; ``wav_of(utt)`` is its wav.scp entry.
    """
    data_dir = Path(data_dir)
    counts: Dict[str, int] = {}
    for name, utts in sets.items():
        with atomic_dir(data_dir / name) as tmp:
            DataDir(
                wav_scp={u.utt_id: wav_of(u) for u in utts},
                text={u.utt_id: u.words for u in utts},
                utt2spk={u.utt_id: u.speaker for u in utts},
            ).write(tmp)
        counts[name] = len(utts)
        logger.info("wrote %s: %d utterances, %d speakers", data_dir / name, len(utts), len({u.speaker for u in utts}))
    return counts


# --------------------------------------------------------------------------- CLI


def release_parser(
    name: str,
    doc: str,
    root_option: str,
    root_help: str,
    download_holds: str,
    check_audio_help: str,
) -> argparse.ArgumentParser:
    """The parser of ``espnet_llm_plugin.bin.<name>`` with the options every prepare CLI has:
    ``<root_option>``, --data_dir, --download, --download_dir (``download_holds``: what
    --download puts there) and --check_audio; the caller adds the corpus's own options."""
    p = cli_parser(name, doc)
    p.add_argument(root_option, type=Path, default=None, help=f"{root_help} (default: --download_dir)")
    p.add_argument("--data_dir", type=Path, default=Path("data"), help="output parent directory (default: %(default)s)")
    p.add_argument(
        "--download", type=str2bool, default=False, help="download and extract what is not found (true/false)"
    )
    p.add_argument(
        "--download_dir",
        type=Path,
        default=Path("downloads"),
        help=f"where --download puts {download_holds} (default: %(default)s)",
    )
    p.add_argument("--check_audio", type=str2bool, default=True, help=f"{check_audio_help} before writing (true/false)")
    return p


def run_prepare(prog: str, prepare: Callable[[], Dict[str, int]], errors: Sequence[Type[Exception]] = ()) -> None:
    """Run ``prepare`` (returning utterances per data directory) with logging; a bad corpus
    (``errors``, ReleaseError, DataDirError, OSError) exits with '<prog>: error: ...' and no
    traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        counts = prepare()
    except (*errors, ReleaseError, DataDirError, OSError) as e:
        sys.exit(f"{prog}: error: {e}")
    logger.info("done: %s", ", ".join(f"{k} {v} utterances" for k, v in counts.items()))
