"""Atomic outputs leave nothing half-written behind."""

import pytest

from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_file, atomic_write_text


def test_atomic_file_replaces_only_on_success(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write_text(p, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_file(p) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_swaps_in_complete_dir_and_cleans_up_on_failure(tmp_path):
    d = tmp_path / "dump"
    with atomic_dir(d) as tmp:
        (tmp / "a").write_text("1")
    assert (d / "a").read_text() == "1"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(d) as tmp:
            (tmp / "b").write_text("2")
            raise KeyboardInterrupt
    assert sorted(x.name for x in d.iterdir()) == ["a"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dump"]
    with atomic_dir(d) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(x.name for x in d.iterdir()) == ["c"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dump"]


def test_outputs_get_umask_modes_not_owner_only(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def _dead_pid():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)  # exited and reaped: nothing runs under this pid now


def test_temporaries_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    import os

    dead = _dead_pid()
    stale_file = tmp_path / f".out.txt.{dead}.k3j_x9q2.tmp"
    stale_file.write_text("half")
    stale_dir = tmp_path / f".dump.{dead}.a1b2c3d4.tmp"
    (stale_dir / "sub").mkdir(parents=True)
    stale_old = tmp_path / f".dump.{dead}.zz99yy88.old"
    stale_old.mkdir()
    # a concurrent writer (alive) and names this module does not make are left alone
    live = tmp_path / f".out.txt.{os.getpid()}.abcdefgh.tmp"
    live.write_text("in progress")
    foreign = [
        tmp_path / ".out.txt.tmp",
        tmp_path / f".out.txt.{dead}.tmp",
        tmp_path / f"out.{dead}.abcdefgh.tmp",
        tmp_path / f".out.txt.{dead}.abc.tmp",
    ]
    for p in foreign:
        p.write_text("not ours")

    atomic_write_text(tmp_path / "out.txt", "new\n")
    assert not stale_file.exists() and not stale_dir.exists() and not stale_old.exists()
    assert live.exists() and all(p.exists() for p in foreign)
    with atomic_dir(tmp_path / "dump") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.txt", "dump", live.name] + [p.name for p in foreign]
    )


def test_atomic_dir_cleans_its_directory_too(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".units.{dead}.q1w2e3r4.tmp"
    (stale / "part").mkdir(parents=True)
    with atomic_dir(tmp_path / "units") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["units"]


def test_temporary_older_than_the_process_now_holding_its_pid_is_stale(tmp_path):
    import os

    from espnet_llm_plugin.fileio.atomic import remove_stale_temps

    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("process start times come from /proc")
    # named with this (running) process' pid, but last written long before it started: the
    # pid was reused, its writer is gone
    reused = tmp_path / f".out.txt.{os.getpid()}.abcdefgh.tmp"
    reused.write_text("half")
    os.utime(reused, (1_000_000_000, 1_000_000_000))
    fresh = tmp_path / f".out.txt.{os.getpid()}.ijklmnop.tmp"
    fresh.write_text("being written")
    assert remove_stale_temps(tmp_path) == [reused]
    assert fresh.exists()


def test_directory_lock_names_the_directory_and_the_holder(tmp_path):
    import os

    from espnet_llm_plugin.fileio.atomic import DirectoryLockedError, exclusive_dir_lock

    exp = tmp_path / "exp"
    with exclusive_dir_lock(exp, "asr_train") as lock:
        # flock locks are per open file: a second open, even in this process, is refused
        with pytest.raises(DirectoryLockedError, match=rf"{exp}: another asr_train .*pid {os.getpid()}"):
            with exclusive_dir_lock(exp, "asr_train"):
                pass
        assert lock.read_text().split()[0] == str(os.getpid())
    with exclusive_dir_lock(exp, "asr_train"):  # released on exit
        pass


def test_lock_of_another_process_is_refused_and_freed_when_it_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    from espnet_llm_plugin.fileio.atomic import DirectoryLockedError, exclusive_dir_lock

    exp = tmp_path / "exp"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom espnet_llm_plugin.fileio.atomic import exclusive_dir_lock\n"
            f"with exclusive_dir_lock({str(exp)!r}, 'asr_train'):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLockedError, match=rf"pid {holder.pid} holds"):
            with exclusive_dir_lock(exp, "asr_train"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive_dir_lock(exp, "asr_train"):  # the kernel released it with the process
        pass
