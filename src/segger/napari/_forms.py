"""Parameter forms generated from the parameter dataclasses (issue 11 #1: parameters declared once).

:func:`param_form` makes one magicgui input per dataclass field from the metadata that
:func:`segger.params.param` declares — the label, the tooltip (the help text, the unit and the
valid values, the words ``segger --help`` and ``docs/parameters.md`` use), min/max from the range
(an open bound is one display step inside it), a ComboBox for choices, a CheckBox for a flag, and
the dataclass default as the initial value — and reads the values back as a dataclass instance
checked by its own ``validate()``. The wheel over an unfocused input scrolls the dock instead of
changing the value (:func:`segger.napari._common.guard_wheel_on`).

Display-only options per field (``options={name: {...}}``): ``decimals``, ``step``, ``label``,
``unset`` (the text shown for an optional field left unset: its lowest value stands for None).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from segger.params import _default, describe_range, field_kind

__all__ = ["ParamForm", "param_form", "tooltip"]


def tooltip(cls: type, f: dataclasses.Field) -> str:
    """``help (unit; valid values)``: what the input's tooltip says."""
    md = f.metadata
    bits = [b for b in (md.get("unit"), describe_range(cls, f)) if b]
    return f"{md.get('help', '')} ({'; '.join(bits)})" if bits else md.get("help", "")


def _decimals(value: Any, low: Any) -> int:
    for d in range(2, 7):
        if all(v is None or round(float(v), d) == float(v) for v in (value, low)):
            return d
    return 6


class ParamForm:
    """The generated inputs of some fields of a parameter dataclass.

    ``widgets[name]``: the magicgui widget; ``native(name)``: its Qt widget (a QSpinBox,
    QDoubleSpinBox, QComboBox, QCheckBox or QLineEdit); :meth:`add_rows` puts them into a
    QFormLayout; :meth:`values` / :meth:`value` read them back.
    """

    def __init__(self, cls: type, fields: Iterable[str] | None = None, *, labels: dict[str, str] | None = None,
                 options: dict[str, dict] | None = None) -> None:
        from magicgui import widgets as mw

        from segger.napari._common import guard_wheel_on

        self.cls = cls
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        names = list(fields) if fields is not None else list(by_name)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
        labels, options = dict(labels or {}), dict(options or {})
        self.fields = {n: by_name[n] for n in names}
        self.widgets: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self._unset: dict[str, Any] = {}  # optional fields: the value that means None
        for name, f in self.fields.items():
            md, opt = f.metadata, dict(options.get(name, {}))
            kind, optional = field_kind(cls, f)
            default = _default(f)
            label = opt.pop("label", None) or labels.get(name) or name.replace("_", " ")
            tip = tooltip(cls, f)
            if md.get("choices"):
                w = mw.ComboBox(choices=list(md["choices"]), value=default if default is not None else md["choices"][0])
            elif kind == "bool":
                w = mw.CheckBox(value=bool(default), text=label)
            elif kind in ("int", "float"):
                lo, hi = md.get("low"), md.get("high")
                if kind == "int":
                    lo = -(2**31 - 1) if lo is None else int(lo) + (1 if md.get("low_open") else 0)
                    hi = 2**31 - 1 if hi is None else int(min(hi, 2**31 - 1)) - (1 if md.get("high_open") else 0)
                    w = mw.SpinBox(min=lo, max=hi, step=int(opt.get("step", 1)))
                else:
                    dec = int(opt.get("decimals", _decimals(default, lo)))
                    eps = 10.0 ** -dec
                    lo = -1e12 if lo is None else float(lo) + (eps if md.get("low_open") else 0.0)
                    hi = 1e12 if hi is None else float(hi) - (eps if md.get("high_open") else 0.0)
                    w = mw.FloatSpinBox(step=float(opt.get("step", 0.5 if dec <= 2 else 10.0 ** (1 - dec))))
                    w.native.setDecimals(dec)
                    w.min, w.max = lo, hi
                    if md.get("unit"):
                        w.native.setSuffix(f" {md['unit']}")
                if optional and default is None:
                    self._unset[name] = w.min
                    w.native.setSpecialValueText(str(opt.get("unset", "unset")))
                    w.value = w.min
                else:
                    w.value = default
            else:  # str, int|str: a line of text
                w = mw.LineEdit(value="" if default is None else str(default))
            w.tooltip = tip
            w.native.setObjectName(f"segger_param_{cls.__name__}_{name}")
            guard_wheel_on(w.native)
            self.widgets[name] = w
            self.labels[name] = label

    # ---------------------------------------------------------------------------------------
    def native(self, name: str):
        return self.widgets[name].native

    def add_rows(self, form, names: Iterable[str] | None = None) -> None:
        """Add the inputs (label + widget; a CheckBox alone) to a QFormLayout."""
        from qtpy.QtWidgets import QLabel

        for name in (names if names is not None else self.widgets):
            w = self.widgets[name]
            if field_kind(self.cls, self.fields[name])[0] == "bool":
                form.addRow(w.native)
                continue
            lab = QLabel(self.labels[name])
            lab.setToolTip(w.tooltip)
            form.addRow(lab, w.native)

    def widget(self):
        """A standalone QWidget with the inputs in a form layout."""
        from qtpy.QtWidgets import QFormLayout, QWidget

        box = QWidget()
        self.add_rows(QFormLayout(box))
        return box

    def values(self) -> dict[str, Any]:
        """``{field: value}`` as the dataclass takes them (an optional field at its unset value: None)."""
        out: dict[str, Any] = {}
        for name, w in self.widgets.items():
            kind, optional = field_kind(self.cls, self.fields[name])
            v = w.value
            if name in self._unset and v == self._unset[name]:
                v = None
            elif kind == "int" and v is not None:
                v = int(v)
            elif kind == "float" and v is not None:
                v = float(v)
            elif kind == "int|str" and isinstance(v, str):
                v = int(v) if v.strip().isdigit() else v
            elif kind == "str" and optional and v == "":
                v = None
            out[name] = v
        return out

    def value(self, **extra: Any) -> Any:
        """The dataclass of the inputs (the other fields: ``extra``, else their defaults), validated."""
        obj = self.cls(**{**self.values(), **extra})
        validate = getattr(obj, "validate", None)
        return validate() if callable(validate) else obj

    def set_values(self, **values: Any) -> None:
        for name, v in values.items():
            w = self.widgets[name]
            w.value = self._unset[name] if (v is None and name in self._unset) else v


def param_form(cls: type, fields: Iterable[str] | None = None, **kw: Any) -> ParamForm:
    """One magicgui input per field of ``cls`` (all fields when ``fields`` is None); see :class:`ParamForm`."""
    return ParamForm(cls, fields, **kw)
