"""Atomic outputs: write into a temporary sibling, rename into place only when complete.

A crash, a Ctrl-C or a bad input half way leaves the old output (or none) behind, never a
half-written file or directory, so a stage can simply be re-run.

Temporary siblings of ``out`` are named ``.out.<pid>.<random>.tmp`` (``.old`` for a replaced
directory on its way out), ``<pid>`` being the writing process. A process killed with
``SIGKILL`` cannot remove them; the next process writing into the same directory does, on
its first write there (:func:`remove_stale_temps`), those whose writer is gone: its pid is not
running, or the process now holding that pid started after the entry was last written (a
reused pid).

:func:`exclusive_dir_lock` keeps two runs from writing into one directory at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Set, Union

logger = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create owner-only entries; give them the usual umask-based mode."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def default_file_modes(directory: Path) -> None:
    """Give the files directly in ``directory`` the usual umask-based mode: transformers and
    mkstemp write some of them owner-only (e.g. a model saved into an atomic temp dir)."""
    mode = 0o666 & ~_umask()
    for path in Path(directory).iterdir():
        if path.is_file():
            path.chmod(mode)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _process_start_time(pid: int) -> Optional[float]:
    """Start of process ``pid`` in seconds since the epoch (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in ticks


def _writer_is_gone(pid: int, mtime: float) -> bool:
    """True when no running process can still be writing an entry named with ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # running, another user's
    started = _process_start_time(pid)
    # a pid reused by a process started after the entry was last written (1 s: btime's precision)
    return started is not None and started > mtime + 1.0


# ``.<name>.<pid>.<8 random characters from mkstemp/mkdtemp>.tmp|.old``
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}\.(?:tmp|old)$")
_CLEANED_DIRS: Set[str] = set()


def remove_stale_temps(directory: Union[str, Path]) -> List[Path]:
    """Remove the temporaries that killed writers left in ``directory``; returns them.

    Only entries named as this module names them (``.<name>.<pid>.<random>.tmp|.old``) are
    touched, and only when their writer is gone (see the module docstring): a concurrent
    writer's temporaries are kept.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if not _writer_is_gone(int(match.group(1)), mtime):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        logger.info("removed %s, left behind by an interrupted write", entry.path)
        removed.append(Path(entry.path))
    return removed


def _clean_once(directory: Path) -> None:
    """:func:`remove_stale_temps` on the first write into ``directory`` of this process
    (later writes skip the listing: a directory of many atomically written files stays cheap)."""
    key = os.path.abspath(directory)
    if key not in _CLEANED_DIRS:
        _CLEANED_DIRS.add(key)
        remove_stale_temps(directory)


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temp path next to ``path`` for a writer that takes a file name (e.g.
    ``torch.save``); on success the file is flushed to disk and renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    _default_mode(Path(tmp), is_dir=False)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temp file next to ``path``; on success rename it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory in a temp sibling and swap it in as ``path`` when done.

    An existing ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    _default_mode(tmp, is_dir=True)
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LOCK_NAME = ".espnet_llm_plugin.lock"


class DirectoryLockedError(RuntimeError):
    """Another process holds the lock of a directory (:func:`exclusive_dir_lock`)."""


@contextlib.contextmanager
def exclusive_dir_lock(directory: Union[str, Path], what: str = "a run") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<directory>/.espnet_llm_plugin.lock`` while writing there.

    The lock file records the holder's pid (read back for the message); the kernel releases
    the lock when its holder exits, ``kill -9`` included, so a stale lock file locks nothing.
    The file itself is left in place (removing it would let a third process lock a new file).

    Args:
        directory: created if missing.
        what: names the holder in messages (``"asr_train"``).

    Raises:
        DirectoryLockedError: another process holds the lock; names the directory and its pid.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 256, 0).decode("utf-8", errors="replace").split()
            pid = holder[0] if holder else "unknown"
            raise DirectoryLockedError(
                f"{directory}: another {what} is writing into this directory (pid {pid} holds "
                f"{lock_path}); wait for it to finish or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode("utf-8"), 0)
        yield lock_path
    finally:
        os.close(fd)  # releases the lock
