"""Check a task's YAML config before ESPnet spends seconds building a model from it.

ESPnet rejects an unknown top-level key, but a misspelt key inside ``encoder_conf`` only
surfaces as ``TypeError: __init__() got an unexpected keyword argument`` deep in
``build_model``. We check both levels and name the file, the key and close matches.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
from pathlib import Path
from typing import Iterable, List, Optional

import yaml


class ConfigError(ValueError):
    """A config file that ESPnet would reject or misread."""


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def load_yaml_mapping(path: str | Path) -> dict:
    """Read a YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def _accepted_kwargs(cls: type) -> Optional[List[str]]:
    """Keyword names ``cls.__init__`` accepts, or None when it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n in params if n != "self"]


def check_task_config(
    config_path: str | Path, parser: argparse.ArgumentParser, class_choices_list: list
) -> None:
    """Validate ``config_path`` against a task parser and its ``ClassChoices``.

    Raises:
        ConfigError: naming the file and the unknown key (``encoder_conf.num_blokcs``).
    """
    config = load_yaml_mapping(config_path)
    dests = {a.dest for a in parser._actions}
    for key in config:
        if key not in dests:
            raise ConfigError(
                f"{config_path}: unknown config key '{key}'{_suggest(key, dests)}"
            )
    for choices in class_choices_list:
        name = config.get(choices.name, choices.default)
        conf = config.get(f"{choices.name}_conf") or {}
        if name is None or not isinstance(name, str):
            continue
        if name.lower() not in choices.classes:
            known = list(choices.classes)
            raise ConfigError(
                f"{config_path}: {choices.name}: '{name}' is not a known {choices.name} "
                f"choice{_suggest(name.lower(), known)}; known: {', '.join(known)}"
            )
        if not isinstance(conf, dict):
            raise ConfigError(f"{config_path}: {choices.name}_conf must be a mapping")
        accepted = _accepted_kwargs(choices.classes[name.lower()])
        if accepted is None:
            continue
        for key in conf:
            if key not in accepted:
                raise ConfigError(
                    f"{config_path}: unknown config key '{choices.name}_conf.{key}' for "
                    f"{choices.name} '{name}'{_suggest(key, accepted)}"
                )
