"""Read YAML config files into validated models, with errors that name file, line and key.

``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the environment before
validation. Error messages never repeat a value from the file: a secret is not echoed back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from broker.config.errors import ConfigError, ConfigProblem
from broker.config.models import BrokerConfig
from broker.config.yaml_source import YamlRefused, parse_yaml
from clusters.config import ClusterConfig
from clusters.kinds import KindUnavailable, adapter_class, known_kinds

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(str(path), "not UTF-8 text", line=line, column=column) from None
    try:
        return parse_yaml(text)
    except YamlRefused as exc:
        raise ConfigError(str(path), problems=exc.problems) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the value at ``loc`` (or of its nearest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            key_node = next((k for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                return line
            line = (key_node or match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _interpolate(value: Any, path: Path, node: yaml.Node | None) -> Any:
    """``value`` with ``${VAR}`` references replaced; a :class:`ConfigError` naming every unset one."""
    missing: list[ConfigProblem] = []

    def walk(value: Any, loc: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str):

            def replace(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                found = os.environ.get(name)
                # As in the shell: ${VAR:-default} also takes the default when VAR is set but empty.
                if found or (found is not None and default is None):
                    return found
                if default is not None:
                    return default
                key = ".".join(str(p) for p in loc) or None
                missing.append(
                    ConfigProblem(f"environment variable {name} is not set", key, _line_of(node, loc))
                )
                return match.group(0)

            return _ENV_REF.sub(replace, value)
        return value

    result = walk(value, ())
    if missing:
        raise ConfigError(str(path), problems=missing)
    return result


def _validate(model: type[BaseModel], data: Mapping[str, Any], path: Path, node: yaml.Node | None) -> Any:
    """``data`` as ``model``; a :class:`ConfigError` listing every problem with its key and line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            reason = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            key = ".".join(str(p) for p in loc) or None
            problems.append(ConfigProblem(reason.removeprefix("Value error, "), key, _line_of(node, loc)))
        # pydantic lists unknown fields after the others: show them in the file's order instead.
        problems.sort(key=lambda p: p.line if p.line is not None else 0)
        raise ConfigError(str(path), problems=problems) from None


def _mapping(data: Any, path: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "the file must hold a mapping of keys to values", line=1)
    return data


def load_broker_config(path: str | os.PathLike[str]) -> BrokerConfig:
    """Load broker.yaml; paths in it are resolved against the file's folder."""
    file = Path(path)
    data, node = _read_yaml(file)
    data = _interpolate(_mapping(data, file), file, node)
    config: BrokerConfig = _validate(BrokerConfig, data, file, node)
    return config.resolved(file.parent.resolve())


def load_cluster_file(path: str | os.PathLike[str]) -> ClusterConfig:
    """Load one clusters.d file into its kind's config model."""
    file = Path(path)
    data, node = _read_yaml(file)
    data = _interpolate(_mapping(data, file), file, node)
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            str(file),
            f"missing or invalid; expected one of {', '.join(known_kinds())}",
            key="kind",
            line=_line_of(node, ("kind",)),
        )
    try:
        model = adapter_class(kind).config_model
    except KindUnavailable as exc:
        raise ConfigError(str(file), exc.args[0], key="kind", line=_line_of(node, ("kind",))) from None
    except KeyError:
        # Not the registry's message: that one repeats the value, and nothing from the file is.
        reason = f"unknown cluster kind; expected one of {', '.join(known_kinds())}"
        raise ConfigError(str(file), reason, key="kind", line=_line_of(node, ("kind",))) from None
    return _validate(model, data, file, node)


def cluster_files(directory: Path) -> list[Path]:
    """The cluster files in ``directory``: ``*.yaml`` and ``*.yml``, hidden files skipped, sorted."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def load_clusters_dir(directory: str | os.PathLike[str]) -> tuple[list[ClusterConfig], list[ConfigError]]:
    """Every valid cluster in ``directory``, and an error for every file refused.

    A duplicate name is refused in the later file (by file name order); the first stays.
    """
    configs: list[ClusterConfig] = []
    errors: list[ConfigError] = []
    seen: dict[str, Path] = {}
    for file in cluster_files(Path(directory)):
        try:
            config = load_cluster_file(file)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if config.name in seen:
            errors.append(
                ConfigError(str(file), f"cluster name is already used by {seen[config.name].name}", "name")
            )
            continue
        seen[config.name] = file
        configs.append(config)
    return configs, errors
