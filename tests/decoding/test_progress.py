import logging

from espnet_llm_plugin.decoding.progress import ProgressLog


def test_lines_every_step_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="espnet_llm_plugin.decoding.progress")
    p = ProgressLog(25, "decoded utterances", every_percent=20)  # a line every 5 items
    for _ in range(25):
        p.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5
    assert lines[0].startswith("decoded utterances: 5/25 (20%)") and "ETA" in lines[0]
    assert lines[-1].startswith("decoded utterances: 25/25 (100%)") and "ETA 0 s" in lines[-1]


def test_unknown_total_counts_without_eta(caplog):
    caplog.set_level(logging.INFO, logger="espnet_llm_plugin.decoding.progress")
    p = ProgressLog(None, "items")
    for _ in range(20):
        p.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [lines[0], lines[1]] and lines[1].startswith("items: 20,") and "ETA" not in lines[1]
