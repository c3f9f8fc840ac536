"""Check a task's YAML config before ESPnet spends seconds building a model from it.

ESPnet rejects an unknown top-level key, but a misspelt key inside ``encoder_conf`` only
surfaces as ``TypeError: __init__() got an unexpected keyword argument`` deep in
``build_model``. We check both levels and name the file, the key and close matches.
ESPnet also takes YAML values as they are (argparse's ``type`` never sees them), so
``batch_size: "32"`` or ``decoder_conf.lora_r: 8.5`` fails deep inside training with a raw
traceback: :func:`check_value_types` checks the value types of the top-level options (int,
float, bool, and their ``*_or_none``) and of the ``<choice>_conf`` keys of our own components
(from their constructors' type hints), naming the key, the file, the expected type and the
value given.
(Token strings and an LLM decoder's framing are checked by
:func:`espnet_llm_plugin.asr.llm_token_config.check_llm_token_config`.)
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

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


def check_task_config(config_path: str | Path, parser: argparse.ArgumentParser, class_choices_list: list) -> None:
    """Validate ``config_path`` against a task parser and its ``ClassChoices``.

    Raises:
        ConfigError: naming the file and the unknown key (``encoder_conf.num_blokcs``).
    """
    config = load_yaml_mapping(config_path)
    dests = {a.dest for a in parser._actions}
    for key in config:
        if key not in dests:
            raise ConfigError(f"{config_path}: unknown config key '{key}'{_suggest(key, dests)}")
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
        if accepted is not None:
            for key in conf:
                if key not in accepted:
                    raise ConfigError(
                        f"{config_path}: unknown config key '{choices.name}_conf.{key}' for "
                        f"{choices.name} '{name}'{_suggest(key, accepted)}"
                    )
    check_value_types(config, parser, class_choices_list, config_path)


# argparse ``type`` functions (ours and ESPnet's, by name) -> (the Python types a YAML value
# may have, the name said in errors, whether None is allowed)
_ARG_TYPES: Dict[str, Tuple[tuple, str, bool]] = {
    "int": ((int,), "int", False),
    "float": ((int, float), "float", False),
    "str2bool": ((bool,), "bool (true/false)", False),
    "int_or_none": ((int,), "int or null", True),
    "float_or_none": ((int, float), "float or null", True),
    "str2bool_or_none": ((bool,), "bool or null", True),
}


def _is_instance(value: Any, kinds: tuple) -> bool:
    if isinstance(value, bool):  # YAML true is an int to Python: only a bool may be one
        return bool in kinds
    if isinstance(value, float) and int in kinds and float not in kinds:
        return value.is_integer()  # 1.0e6 for an int option: ESPnet copes
    return isinstance(value, kinds)


def _type_error(config_path: Any, key: str, expected: str, value: Any) -> ConfigError:
    hint = ""
    if isinstance(value, str) and ("int" in expected or "float" in expected):
        try:
            float(value)
            hint = " (YAML 1.1 reads 1e-3 and 1.0e6 as strings: write 1.0e-3, 1.0e+6)"
        except ValueError:
            pass
    return ConfigError(f"{config_path}: {key}: expected {expected}, got {value!r} ({type(value).__name__}){hint}")


def _hint_kinds(hint: Any) -> Optional[Tuple[tuple, str, bool]]:
    """A constructor's type hint as (Python types, name, None allowed), or None when we do not
    check it (``Any``, classes, callables, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {int: ((int,), "int"), float: ((int, float), "float"), bool: ((bool,), "bool"), str: ((str,), "str")}
    if hint in simple:
        return (*simple[hint], False)
    if origin in (list, tuple, typing.List, typing.Tuple) or hint in (list, tuple):
        return ((list, tuple), "a list", False)
    if origin in (dict, typing.Dict) or hint is dict:
        return ((dict,), "a mapping", False)
    if origin is typing.Union:
        parts = [a for a in args if a is not type(None)]
        inner = [_hint_kinds(a) for a in parts]
        if any(k is None for k in inner):
            return None
        kinds = tuple(t for k in inner for t in k[0])
        allow_none = len(parts) < len(args)
        name = " or ".join(k[1] for k in inner) + (" or null" if allow_none else "")
        return kinds, name, allow_none
    return None


def _constructor_hints(cls: type) -> Dict[str, Any]:
    """Type hints of ``cls.__init__``, and of its bases' where it passes ``**kwargs`` on
    (``model_conf.ctc_weight`` of our model goes to ESPnet's ``ESPnetASRModel``)."""
    hints: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            own = typing.get_type_hints(init)
        except Exception:  # an annotation that does not resolve: check nothing rather than fail
            own = {}
        for k, v in own.items():
            hints.setdefault(k, v)
        params = inspect.signature(init).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    hints.pop("return", None)
    return hints


def check_value_types(
    config: dict,
    parser: argparse.ArgumentParser,
    class_choices_list: list = (),
    config_path: Any = "config",
) -> None:
    """Check the value types of a config mapping before ESPnet uses them unconverted.

    Top-level keys: the parser's ``int``/``float``/``str2bool`` (and ``*_or_none``) options.
    ``<choice>_conf`` keys: those of our own components (``espnet_llm_plugin`` classes), from
    their constructors' type hints (int, float, bool, str, lists, mappings, Optional/Union).

    Raises:
        ConfigError: ``<file>: <key>: expected <type>, got <value> (<its type>)``.
    """
    actions = {a.dest: a for a in parser._actions}
    for key, value in config.items():
        action = actions.get(key)
        kind = _ARG_TYPES.get(getattr(getattr(action, "type", None), "__name__", ""))
        if action is None or kind is None:
            continue
        kinds, expected, allow_none = kind
        values = value if isinstance(value, list) and action.nargs not in (None, "?") else [value]
        for v in values:
            if (v is None and allow_none) or (v is not None and _is_instance(v, kinds)):
                continue
            raise _type_error(config_path, key, expected, value)
    for choices in class_choices_list:
        name = config.get(choices.name, choices.default)
        conf = config.get(f"{choices.name}_conf")
        if not isinstance(name, str) or not isinstance(conf, dict) or name.lower() not in choices.classes:
            continue
        cls = choices.classes[name.lower()]
        if not str(getattr(cls, "__module__", "")).startswith("espnet_llm_plugin"):
            continue  # ESPnet's own components: their keys are not ours to type
        hints = _constructor_hints(cls)
        for key, value in conf.items():
            kind = _hint_kinds(hints[key]) if key in hints else None
            if kind is None:
                continue
            kinds, expected, allow_none = kind
            if (value is None and allow_none) or (value is not None and _is_instance(value, kinds)):
                continue
            raise _type_error(config_path, f"{choices.name}_conf.{key}", expected, value)
