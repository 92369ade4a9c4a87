"""Typed settings: a recipe's ``CONFIG`` defaults (or a processor's keyword arguments), then a
config file, then ``--set`` values, validated with pydantic against their types.

- a processor's settings are its constructor's keyword arguments, typed by their annotations
  (:func:`processor_settings`);
- the type of a recipe key is that of its default (``list[int]`` for ``[10, 10]``, ``bool`` for
  ``False``, ...); a key whose default is ``None`` takes its type from :data:`KNOWN_TYPES`, else
  any value;
- ``--set KEY=VALUE`` strings are converted to that type: a list from comma-separated items
  (``train_datasets=qcd_train`` is ``["qcd_train"]``, ``hidden=8,4`` is ``[8, 4]``) or from JSON
  (``hidden=[8,4]``), a mapping from ``a=x,b=y`` or JSON, ``none`` for a key that may be
  ``None``; a value of a type that also takes a string (``tag_threshold: float | str``) is a
  number when it reads as one, else the string; numbers and booleans by pydantic's
  conversion;
- a config file is TOML (``.toml``) or YAML (``.yaml``/``.yml``) holding a table of keys.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

from coffea_ad.errors import CoffeaADError, UnknownNameError

__all__ = ["KNOWN_TYPES", "ConfigError", "load_config_file", "parse_number", "processor_settings",
           "resolve_settings"]

#: types of keys whose default is ``None`` (the default gives no type)
KNOWN_TYPES: dict[str, Any] = {"train_datasets": list[str] | None}


class ConfigError(CoffeaADError, ValueError):
    """A setting of the wrong type or a config file that cannot be read."""


def _type_of(key: str, default: Any) -> Any:
    if default is None:
        return KNOWN_TYPES.get(key, Any)
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        kinds = {type(v) for v in default}
        item = kinds.pop() if len(kinds) == 1 else Any
        return list[item]  # type: ignore[valid-type]
    if isinstance(default, Mapping):
        return dict[str, Any]
    return Any


_LIST_ORIGINS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_MAP_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _members(tp: Any) -> tuple[Any, ...]:
    """The members of a union type (``X | Y``, ``Optional[X]``), else ``(tp,)``."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def _is_list_type(tp: Any) -> bool:
    return any(get_origin(m) in _LIST_ORIGINS or m in (list, tuple) for m in _members(tp))


def _is_map_type(tp: Any) -> bool:
    return any(get_origin(m) in _MAP_ORIGINS or m is dict for m in _members(tp))


def _from_string(value: str, tp: Any) -> Any:
    text = value.strip()
    members = _members(tp)
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"expected JSON, found {text!r} ({err})") from None
    if tp is Any:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return parse_number(text)
    if text.lower() in ("none", "null") and type(None) in members:
        return None
    if int in members or float in members:
        number = parse_number(text)
        if not isinstance(number, str):
            return number
    if _is_map_type(tp):
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"expected KEY=VALUE,... or JSON, found {text!r}")
        return {key.strip(): item.strip() for key, item in pairs}
    if _is_list_type(tp):
        if str in members and "," not in text:
            return text  # a type that also takes one string (the processor parses it)
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def parse_number(text: str) -> Any:
    """``text`` as an int, else a float, else the stripped string (a ``key=value`` value)."""
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The table of settings in a TOML or YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot be read ({err})") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path}: expected a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 -- tomllib and yaml raise their own classes
        raise ConfigError(f"config file {path}: not valid {path.suffix[1:]}: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path}: expected a table of settings, found "
                          f"{type(data).__name__}")
    return dict(data)


def resolve_settings(defaults: Mapping[str, Any], *, file_values: Mapping[str, Any] | None = None,
                     overrides: Sequence[str] = (), what: str = "setting",
                     types: Mapping[str, Any] | None = None,
                     other_keys: bool = False) -> dict[str, Any]:
    """The settings that differ from nothing: ``defaults`` updated by ``file_values`` and by
    ``overrides`` (``KEY=VALUE`` strings), each value validated against its type: ``types[key]``
    when given, else its default's type.

    Args:
        other_keys: accept keys that ``defaults`` lacks (untyped), for a processor that takes
            ``**kwargs``.

    Returns:
        Only the keys given in the file or the overrides (the caller's own defaults apply to
        the rest), converted to their types.

    Raises:
        UnknownNameError: a key that ``defaults`` does not have.
        ConfigError: a value that does not convert to the key's type, or a malformed pair.
    """
    from pydantic import TypeAdapter, ValidationError

    given: dict[str, Any] = dict(file_values or {})
    raw: dict[str, str] = {}
    for pair in overrides:
        if "=" not in pair:
            raise ConfigError(f"--set: expected KEY=VALUE, found {pair!r}")
        key, value = pair.split("=", 1)
        raw[key.strip()] = value
    out: dict[str, Any] = {}
    for key in [*given, *raw]:
        if key not in defaults and not other_keys:
            raise UnknownNameError(what, key, defaults)
    for key, value in {**given, **raw}.items():
        tp = (types[key] if types is not None and key in types
              else _type_of(key, defaults.get(key)))
        source = "--set" if key in raw else "config file"
        try:
            parsed = _from_string(value, tp) if key in raw else value
            out[key] = TypeAdapter(tp).validate_python(parsed)
        except (ValidationError, ConfigError) as err:
            first = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            raise ConfigError(f"{source} {key}={value!r}: expected {_describe(tp)}, "
                              f"{first}") from None
    return out


def _describe(tp: Any) -> str:
    if get_origin(tp) is None and hasattr(tp, "__name__"):
        return str(tp.__name__)
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def processor_settings(cls: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """A processor class's settings: ``(defaults, types, takes_other_keys)``.

    The settings are the constructor's arguments after the first (the model), typed by their
    annotations (``Any`` where there is none or it cannot be resolved); a required one has
    the default ``None`` here (the constructor refuses it missing). ``takes_other_keys``:
    the constructor has ``**kwargs``.
    """
    params = list(inspect.signature(cls).parameters.values())[1:]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 -- a user's class with unresolvable annotations: untyped
        hints = {}
    defaults: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    other = False
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            other = True
            continue
        if p.kind is p.VAR_POSITIONAL or p.kind is p.POSITIONAL_ONLY:
            continue
        defaults[p.name] = None if p.default is p.empty else p.default
        kinds[p.name] = hints.get(p.name, Any)
    return defaults, kinds, other
