"""The recipe's own job runner (utils/run.sh) and option parser (utils/parse_options.sh)."""

import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "egs2" / "TEMPLATE" / "llm_asr1" / "utils"


def _run(args, cwd, **kw):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, **kw)


def test_job_array_substitutes_job_and_logs_each(tmp_path):
    proc = _run([str(UTILS / "run.sh"), "JOB=1:3", "log/x.JOB.log", "bash", "-c", "echo out JOB > out.JOB"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}").read_text().strip() == f"out {j}"
        log = (tmp_path / "log" / f"x.{j}.log").read_text()
        assert log.startswith("# bash -c echo out") and "status=0" in log


def test_failed_job_fails_the_array_and_names_its_log(tmp_path):
    proc = _run([str(UTILS / "run.sh"), "JOB=1:3", "log/y.JOB.log", "bash", "-c", "echo boom; test JOB != 2"], tmp_path)
    assert proc.returncode != 0
    assert "1 / 3 jobs failed" in proc.stderr and "log/y.2.log" in proc.stderr and "boom" in proc.stderr


def test_arguments_with_spaces_are_kept(tmp_path):
    proc = _run(
        [str(UTILS / "run.sh"), "l.log", "python3", "-c", "import sys; open('a','w').write(sys.argv[1])", "two words"],
        tmp_path,
    )
    assert proc.returncode == 0 and (tmp_path / "a").read_text() == "two words"


def test_threads_are_shared_between_concurrent_jobs(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RUN_MAX_JOBS": "2"}
    proc = _run(
        [str(UTILS / "run.sh"), "JOB=1:2", "t.JOB.log", "bash", "-c", "echo $OMP_NUM_THREADS > t.JOB"],
        tmp_path,
        env=env,
    )
    assert proc.returncode == 0
    import os

    expected = max(1, (os.cpu_count() or 1) // 2)
    assert (tmp_path / "t.1").read_text().strip() == str(expected)


SCRIPT = """
stage=1
asr_config=""
help_message="usage: demo"
. {utils}/parse_options.sh
echo "stage=$stage asr_config=$asr_config rest=$*"
"""


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--stage", "3"], "stage=3 asr_config= rest="),
        (["--stage=4", "--asr-config", "a b.yaml", "x"], "stage=4 asr_config=a b.yaml rest=x"),
    ],
)
def test_parse_options(tmp_path, args, expected):
    (tmp_path / "s.sh").write_text(SCRIPT.format(utils=UTILS))
    proc = _run(["bash", "s.sh", *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_parse_options_rejects_unknown_and_prints_help(tmp_path):
    (tmp_path / "s.sh").write_text(SCRIPT.format(utils=UTILS))
    proc = _run(["bash", "s.sh", "--stgae", "3"], tmp_path)
    assert proc.returncode != 0 and "unknown option --stgae" in proc.stderr
    proc = _run(["bash", "s.sh", "--help"], tmp_path)
    assert proc.returncode == 0 and "usage: demo" in proc.stdout


def test_rerun_keeps_the_previous_logs(tmp_path):
    for run in range(1, 6):
        proc = _run(
            [str(UTILS / "run.sh"), "--keep_logs", "2", "JOB=1:2", "log/s.JOB.log", "echo", f"run{run}"], tmp_path
        )
        assert proc.returncode == 0, proc.stderr
    for j in (1, 2):
        log = tmp_path / "log" / f"s.{j}.log"
        # the latest run, the two before it; older ones dropped
        assert "run5" in log.read_text()
        assert "run4" in Path(f"{log}.1").read_text() and "run3" in Path(f"{log}.2").read_text()
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == [
        "s.1.log",
        "s.1.log.1",
        "s.1.log.2",
        "s.2.log",
        "s.2.log.1",
        "s.2.log.2",
    ]


def test_keep_logs_zero_overwrites_and_default_keeps_three(tmp_path):
    for run in range(1, 3):
        assert _run([str(UTILS / "run.sh"), "--keep_logs", "0", "a.log", "echo", f"run{run}"], tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log"] and "run2" in (tmp_path / "a.log").read_text()
    for run in range(1, 6):
        assert _run([str(UTILS / "run.sh"), "b.log", "echo", f"run{run}"], tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.glob("b.log*")) == ["b.log", "b.log.1", "b.log.2", "b.log.3"]
    assert "run2" in (tmp_path / "b.log.3").read_text()
    proc = _run([str(UTILS / "run.sh"), "--keep_logs", "x", "c.log", "true"], tmp_path)
    assert proc.returncode != 0 and "--keep_logs" in proc.stderr
