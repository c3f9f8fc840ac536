"""Which frontend a statistics directory was computed with, and a check against a config.

Global mean/variance statistics and shape files depend on the frontend (frame shift,
number of mel bins). A stats directory reused after the frontend changed either crashes
deep in training with a shape error or silently normalises with the wrong statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from espnet_llm_plugin.config_check import ConfigError, load_yaml_mapping

FRONTEND_FILE = "frontend.json"
_IGNORED = ("fs",)  # set on the command line by the recipe, identical for both stages


def frontend_of_config(config: str | Path) -> dict:
    """``{"frontend": name, "frontend_conf": {...}}`` of an ESPnet task config."""
    cfg = load_yaml_mapping(config)
    conf = {k: v for k, v in (cfg.get("frontend_conf") or {}).items() if k not in _IGNORED}
    return {"frontend": cfg.get("frontend", "default"), "frontend_conf": conf}


def check_stats_frontend(stats_file: str | Path, config: str | Path) -> Optional[str]:
    """Raise ConfigError when ``stats_file`` came from another frontend than ``config``.

    ``stats_file`` is ``<stats_dir>/train/feats_stats.npz``; returns None when the stats
    directory records no frontend (made by another tool) and nothing can be checked.
    """
    record = Path(stats_file).parent.parent / FRONTEND_FILE
    if not record.is_file():
        return None
    used = json.loads(record.read_text())
    wanted = frontend_of_config(config)
    if used != wanted:
        raise ConfigError(
            f"{config}: frontend {wanted} differs from the one the statistics in "
            f"{record.parent} were computed with {used}; re-run the statistics stage "
            f"(delete {record.parent} or pass a new --asr_stats_dir)"
        )
    return str(record)
