"""Parameters declared once: help text, unit, range and choices live on the dataclass fields.

Every field of :class:`~segger.data.GraphParams`, :class:`~segger.training.TrainConfig`,
:class:`~segger.prediction.PredictConfig` and :class:`~segger.corrections.FinetuneConfig` is
declared with :func:`param`, which stores its description in ``dataclasses.field(metadata=...)``.
From that one declaration come

* the range checks of the dataclasses' ``validate()`` (:func:`check_fields`),
* the ``segger`` command's options (:func:`add_options`, :func:`from_args`, :func:`check_args`),
  with the dataclass's default as the only default,
* the Markdown parameter tables of ``docs/parameters.md`` (:func:`markdown_table`).

This module imports nothing of segger but :mod:`segger.errors`, so every layer may use it.

Metadata keys: ``help`` (one sentence), ``unit`` (e.g. ``"µm"``), ``low`` / ``high`` (inclusive
bounds unless ``low_open`` / ``high_open``), ``choices``, ``option`` (the CLI option when it is not
``--field-name``), ``cli`` (``False``: set elsewhere, e.g. by the shared ``--device``), ``shared``
(several dataclasses take the same option, e.g. ``--no-deterministic``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, Field
from typing import Any, Iterable

from segger.errors import SeggerInputError

__all__ = ["param", "meta", "field_kind", "check_fields", "describe_range", "option_name", "dest_name",
           "add_options", "from_args", "check_args", "markdown_table", "ParamSpec"]


def param(default: Any = MISSING, help: str = "", *, unit: str | None = None, low: float | None = None,
          high: float | None = None, low_open: bool = False, high_open: bool = False,
          choices: Iterable[Any] | None = None, option: str | None = None, cli: bool = True, shared: bool = False,
          default_factory: Any = MISSING) -> Any:
    """A dataclass field whose metadata describes the parameter (see the module docstring)."""
    md = {"help": help, "unit": unit, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
          "choices": tuple(choices) if choices is not None else None, "option": option, "cli": cli, "shared": shared}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=md)


def meta(f: Field) -> dict:
    return dict(f.metadata)


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def field_kind(cls: type, f: Field) -> tuple[str, bool]:
    """``(kind, optional)``: kind is ``bool``, ``int``, ``float``, ``str`` or ``int|str``."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    if args == (bool,):
        return "bool", optional
    if set(args) == {int, str}:
        return "int|str", optional
    if len(args) == 1 and args[0] in (int, float, str):
        return args[0].__name__, optional
    raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {hint!r}")


def _num(v: float, integer: bool) -> str:
    return f"{int(v):,}" if integer else f"{v:g}"


def describe_range(cls: type, f: Field) -> str:
    """What a valid value is, in words (``a whole number from 1 to 100``, ``auto, flag or polygon``)."""
    md = f.metadata
    kind, optional = field_kind(cls, f)
    unset = ", or leave it unset" if optional and _default(f) is None else ""
    if md.get("choices"):
        ch = [str(c) for c in md["choices"]]
        return (", ".join(ch[:-1]) + " or " + ch[-1] if len(ch) > 1 else ch[0]) + unset
    integer = kind == "int"
    what = "a whole number" if integer else "a number"
    unit = f" {md['unit']}" if md.get("unit") and not integer else ""
    lo, hi = md.get("low"), md.get("high")
    if lo is not None and hi is not None:
        if integer or not (md.get("low_open") or md.get("high_open")):
            text = f"{what} from {_num(lo, integer)} to {_num(hi, integer)}{unit}"
        else:
            text = (f"{what} {'>' if md.get('low_open') else '≥'} {_num(lo, integer)} and "
                    f"{'<' if md.get('high_open') else '≤'} {_num(hi, integer)}{unit}")
    elif lo is not None:
        text = f"{what} {'>' if md.get('low_open') else '≥'} {_num(lo, integer)}{unit}"
    elif hi is not None:
        text = f"{what} {'<' if md.get('high_open') else '≤'} {_num(hi, integer)}{unit}"
    else:
        text = {"bool": "true or false", "str": "a text", "int|str": "a whole number, a name or a list of device indices"}.get(kind, what)
    return text + unset


def _value_ok(cls: type, f: Field, v: Any) -> bool:
    md = f.metadata
    kind, optional = field_kind(cls, f)
    if v is None:
        return optional
    if md.get("choices"):
        return v in md["choices"]
    if kind == "bool":
        return not isinstance(v, str) and v in (True, False)  # bool, numpy bool, 0/1
    if kind in ("int", "float"):
        if isinstance(v, bool) or isinstance(v, str):
            return False
        if kind == "int" and not hasattr(v, "__index__"):
            return False
        if kind == "float" and not hasattr(v, "__float__"):
            return False
        x = float(v)
        if not math.isfinite(x):
            return False
        lo, hi = md.get("low"), md.get("high")
        if lo is not None and (x < lo or (md.get("low_open") and x == lo)):
            return False
        if hi is not None and (x > hi or (md.get("high_open") and x == hi)):
            return False
        return True
    if kind == "str":
        return isinstance(v, str)
    if isinstance(v, (list, tuple)):  # Lightning device indices, e.g. devices=[0, 1]
        return len(v) > 0 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def check_fields(obj: Any, what: str) -> None:
    """Raise a one-line :class:`SeggerInputError` for the first field outside its declared range/choices.

    ``what`` names the kind of setting, e.g. ``"graph parameter"``: the message reads
    ``graph parameter k_tx=0 is invalid: use a whole number from 1 to 100``.
    """
    cls = type(obj)
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if not _value_ok(cls, f, v):
            raise SeggerInputError(f"{what} {f.name}={v!r} is invalid: use {describe_range(cls, f)}")


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------
def option_name(cls: type, f: Field) -> str:
    """The CLI option of a field: ``--k-tx``; ``--no-x`` for a boolean that defaults to on."""
    opt = f.metadata.get("option")
    if opt:
        return opt
    base = f.name.replace("_", "-")
    if field_kind(cls, f)[0] == "bool" and _default(f) is True:
        return f"--no-{base}"
    return f"--{base}"


def dest_name(cls: type, f: Field) -> str:
    opt = option_name(cls, f).lstrip("-")
    if field_kind(cls, f)[0] == "bool" and opt.startswith("no-") and not f.metadata.get("option"):
        opt = opt[3:]
    return opt.replace("-", "_")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One generated option: which dataclass field it sets."""

    cls: type
    name: str
    option: str
    dest: str


def _parse_int_or_str(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def help_text(cls: type, f: Field) -> str:
    """``help (unit; default D; range)`` for ``--help``; ``%`` escaped for argparse."""
    md = f.metadata
    kind, _ = field_kind(cls, f)
    d = _default(f)
    bits = []
    if md.get("unit"):
        bits.append(md["unit"])
    if kind == "bool":
        bits.append("default on" if d else "default off")
    else:
        bits.append("default unset" if d is None else f"default {d}")
        if md.get("low") is not None or md.get("high") is not None:
            bits.append(describe_range(cls, f).replace(", or leave it unset", ""))
    text = f"{md.get('help', '')} ({'; '.join(bits)})"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser | Any, cls: type, *, title: str | None = None,
                skip: Iterable[str] = (), specs: list[ParamSpec] | None = None) -> list[ParamSpec]:
    """Add one option per field of ``cls`` (its own argument group when ``title``); return their specs.

    Every option's argparse default is ``None`` ("not given"): :func:`from_args` then leaves the
    dataclass's default in place, so the default is declared once. ``specs``: the specs added to
    this parser so far; a ``shared`` option already there is not added twice.
    """
    group = parser.add_argument_group(title) if title else parser
    skip = set(skip)
    taken = {s.option for s in specs or []}
    out: list[ParamSpec] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        opt, dest = option_name(cls, f), dest_name(cls, f)
        spec = ParamSpec(cls, f.name, opt, dest)
        out.append(spec)
        if opt in taken:
            if not f.metadata.get("shared"):
                raise ValueError(f"{cls.__name__}.{f.name}: option {opt} is taken by another parameter")
            continue
        taken.add(opt)
        kind, _ = field_kind(cls, f)
        kw: dict[str, Any] = {"dest": dest, "default": None, "help": help_text(cls, f)}
        if kind == "bool":
            kw.update(action="store_const", const=not _default(f))
        else:
            kw["type"] = {"int": int, "float": float, "str": str, "int|str": _parse_int_or_str}[kind]
            if f.metadata.get("choices"):
                kw["choices"] = list(f.metadata["choices"])
        group.add_argument(opt, **kw)
    if specs is not None:
        specs.extend(out)
    return out


def given(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (``{field: value}``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        v = getattr(ns, dest_name(cls, f), None)
        if v is not None:
            out[f.name] = v
    return out


def from_args(cls: type, ns: argparse.Namespace, **overrides: Any) -> Any:
    """A ``cls`` with the options given in ``ns`` and the dataclass defaults for the rest."""
    return cls(**{**given(ns, cls), **overrides})


def check_args(ns: argparse.Namespace, specs: Iterable[ParamSpec]) -> None:
    """One-line error naming the option (and the field) for a given value outside its declared range."""
    for s in specs:
        v = getattr(ns, s.dest, None)
        if v is None:
            continue
        f = {x.name: x for x in dataclasses.fields(s.cls)}[s.name]
        if not _value_ok(s.cls, f, v):
            raise SeggerInputError(f"{s.option} {v} is out of range ({s.name}): use {describe_range(s.cls, f)}")


# ----------------------------------------------------------------------------------------------
# documentation
# ----------------------------------------------------------------------------------------------
def markdown_table(cls: type) -> str:
    """A Markdown table of the parameters of ``cls``: field, CLI option, default, unit, valid values, meaning."""
    rows = ["| parameter | CLI option | default | unit | valid values | meaning |", "|---|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        md = f.metadata
        opt = option_name(cls, f) if md.get("cli", True) else (md.get("option") or "—")
        d = _default(f)
        valid = describe_range(cls, f)
        cells = [f"`{f.name}`", f"`{opt}`", f"`{d!r}`", md.get("unit") or "", valid, md.get("help", "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
