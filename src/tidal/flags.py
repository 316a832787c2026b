"""`tidal run`'s flags, generated from the configuration dataclasses (:mod:`tidal.config`).

One flag per field, typed by the field's annotation, with the field's comment (or
``field(metadata={"help": ...})``) as its help and its value in each preset, so a field
cannot exist without its flag. Imports only the standard library and ``tidal.config``: the
CLI builds its parser without importing torch.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from collections.abc import Callable
from typing import Any

from tidal.config import PRESETS, ExperimentConfig

__all__ = ["ConfigFlag", "config_flags", "config_sections"]

# Flag names kept beside the generated ones (the README and people's scripts use them).
ALIASES = {"datasets": ("--dataset",), "imbalances": ("--imbalance",), "strategy.tidal_weight": ("--lambda",)}
# The flags of `tidal run` that are not configuration fields; a field with one of these names
# (or a name two sections share) gets its section as a prefix: --<section>-<name>.
RUN_FLAGS = ("preset", "config", "out", "device", "jobs", "backend", "address", "quiet", "mlflow", "tensorboard",
             "track_td", "help", "version")


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """The `tidal run` flag of one configuration field."""

    section: str  # the ExperimentConfig field holding the field's dataclass ("train", ...); "" = top level
    name: str  # the field's name
    flags: tuple[str, ...]  # option strings, the generated one first
    kwargs: dict[str, Any]  # the rest of add_argument's arguments (type, nargs or action, metavar, help)

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def config_sections() -> list[tuple[str, type]]:
    """("", ExperimentConfig), then (field name, dataclass) for each section of the configuration."""
    base = PRESETS["quick"]
    return [("", ExperimentConfig)] + [(f.name, type(getattr(base, f.name))) for f in dataclasses.fields(base)
                                       if dataclasses.is_dataclass(getattr(base, f.name))]


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: ``field(metadata={"help": ...})``, else the comment after the
    field in ``cls``'s source, with the indented comment lines that continue it (``#   ...``)."""
    docs = {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source files (a frozen build): flags without their comments
        return docs
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id not in docs:
            line, parts = node.end_lineno, []
            if line in comments:
                parts.append(comments[line])
                while line + 1 in comments and lines[line].lstrip().startswith("#  "):
                    line += 1
                    parts.append(comments[line])
            docs[node.target.id] = " ".join(parts)
    return docs


def _or_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else convert(text)

    parse.__name__ = f"{convert.__name__} or none"
    return parse


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(text) from None


_CONVERT: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}
_METAVAR = {"int": "N", "float": "X", "str": "TEXT"}


def _arg_kwargs(annotation: str) -> dict[str, Any]:
    """add_argument's type/nargs/metavar (or action) for a field annotated ``annotation``:
    ``int``, ``float``, ``str``, ``bool``, ``T | None`` (``none`` unsets), ``tuple[T, ...]``."""
    spec, optional = annotation.replace(" ", ""), False
    if spec.endswith("|None") or spec.startswith("None|"):
        spec, optional = spec.replace("|None", "").replace("None|", ""), True
    if spec == "bool":
        return {"action": argparse.BooleanOptionalAction}
    kw: dict[str, Any] = {}
    m = re.fullmatch(r"tuple\[(.+)\]", spec)
    if m:
        items = m.group(1).split(",")
        if len(items) == 2 and items[1] == "...":
            kw["nargs"], spec = "+", items[0]
        elif len(set(items)) == 1:
            kw["nargs"], spec = len(items), items[0]
    convert = _CONVERT.get(spec, _literal)
    kw["type"] = _or_none(convert) if optional else convert
    kw["metavar"] = _METAVAR.get(spec, "VALUE")
    return kw


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _preset_values(section: str, name: str) -> str:
    """The field's value in each preset, e.g. "quick: 40, paper: 100", or "default: 0.1"."""
    values = {p: _shown(getattr(getattr(cfg, section) if section else cfg, name)) for p, cfg in PRESETS.items()}
    if len(set(values.values())) == 1:
        return f"default: {next(iter(values.values()))}"
    return ", ".join(f"{p}: {v}" for p, v in sorted(values.items(), key=lambda pv: pv[0] != "quick"))


def config_flags() -> list[ConfigFlag]:
    """One flag per field of the configuration, from the dataclasses themselves: ``--<field>``
    (``_`` as ``-``), or ``--<section>-<field>`` where two sections share a name or the name is
    one of `tidal run`'s own flags; the old names of ``ALIASES`` stay valid."""
    sections = config_sections()
    fields = [(section, f) for section, cls in sections for f in dataclasses.fields(cls)
              if not (section == "" and any(f.name == s for s, _ in sections))]
    counts: dict[str, int] = {}
    for _, f in fields:
        counts[f.name] = counts.get(f.name, 0) + 1
    docs = {section: _field_docs(cls) for section, cls in sections}
    flags = []
    for section, f in fields:
        prefixed = section and (counts[f.name] > 1 or f.name in RUN_FLAGS)
        option = "--" + (f"{section}_{f.name}" if prefixed else f.name).replace("_", "-")
        kwargs = _arg_kwargs(str(f.type))
        doc = docs[section].get(f.name, "")
        kwargs["help"] = (f"{doc} ({_preset_values(section, f.name)})" if doc else _preset_values(section, f.name))
        kwargs["help"] = kwargs["help"].replace("%", "%%")
        flag = ConfigFlag(section, f.name, (option,), kwargs)
        flags.append(dataclasses.replace(flag, flags=(option, *ALIASES.get(flag.dest, ()))))
    return flags
