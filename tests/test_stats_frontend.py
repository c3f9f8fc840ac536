"""A statistics directory made with another frontend is refused, naming both."""

import json

import pytest

from espnet_llm_plugin.config_check import ConfigError
from espnet_llm_plugin.stats_frontend import FRONTEND_FILE, check_stats_frontend, frontend_of_config


def _setup(tmp_path, used_conf, config_text):
    stats = tmp_path / "stats"
    (stats / "train").mkdir(parents=True)
    (stats / "train" / "feats_stats.npz").write_bytes(b"")
    (stats / FRONTEND_FILE).write_text(json.dumps({"frontend": "default", "frontend_conf": used_conf}))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(config_text)
    return stats / "train" / "feats_stats.npz", cfg


def test_same_frontend_passes_and_fs_is_ignored(tmp_path):
    stats, cfg = _setup(tmp_path, {"n_mels": 40}, "frontend_conf:\n  n_mels: 40\n  fs: 16000\n")
    assert check_stats_frontend(stats, cfg) is not None


def test_changed_frontend_is_refused(tmp_path):
    stats, cfg = _setup(tmp_path, {"n_mels": 40}, "frontend_conf:\n  n_mels: 80\n")
    with pytest.raises(ConfigError, match="n_mels.*80.*statistics in .*stats.*n_mels.*40"):
        check_stats_frontend(stats, cfg)


def test_stats_without_record_cannot_be_checked(tmp_path):
    stats, cfg = _setup(tmp_path, {}, "max_epoch: 1\n")
    (tmp_path / "stats" / FRONTEND_FILE).unlink()
    assert check_stats_frontend(stats, cfg) is None
    assert frontend_of_config(cfg) == {"frontend": "default", "frontend_conf": {}}
