import inspect, importlib
mods = ["segger.models.segger_model", "segger.models", "segger.io", "segger.data", "segger.training", "segger.prediction", "segger.validation", "segger.export", "segger.pipeline", "segger.progress", "segger.errors"]
out = ["# API reference", "", "Generated from the code's signatures and docstrings (`python docs/gen_api.py`).", ""]
for m in mods:
    mod = importlib.import_module(m)
    out += [f"## `{m}`", ""]
    doc = (mod.__doc__ or "").strip().split("\n\n")[0]
    if doc: out += [doc, ""]
    names = getattr(mod, "__all__", None) or [n for n, o in vars(mod).items() if not n.startswith("_") and getattr(o, "__module__", "") == m and (inspect.isclass(o) or inspect.isfunction(o))]
    if m == "segger.models.segger_model": names = ["Segger"]
    for n in names:
        o = getattr(mod, n, None)
        if o is None or not (inspect.isclass(o) or inspect.isfunction(o)): continue
        try: sig = str(inspect.signature(o))
        except (TypeError, ValueError): sig = "(...)"
        kind = "class" if inspect.isclass(o) else "def"
        out += [f"### `{kind} {n}{sig}`", ""]
        d = inspect.getdoc(o) or ""
        if d: out += [d.split("\n\n")[0], ""]
        if inspect.isclass(o):
            for mn, mo in vars(o).items():
                if mn.startswith("_") or not callable(mo): continue
                try: ms = str(inspect.signature(mo))
                except (TypeError, ValueError): continue
                md = (inspect.getdoc(mo) or "").split("\n")[0]
                out += [f"- `{mn}{ms}`" + (f": {md}" if md else "")]
            out += [""]
open("docs/api.md", "w").write("\n".join(out) + "\n")
