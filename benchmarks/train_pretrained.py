#!/usr/bin/env python
"""Train the bundled pretrained model, reproducibly, and write its model card (issue 12 #2).

Training data: the bundled lung crop ``src/segger/sample_data/xenium_lung`` only (15k Xenium
transcripts of human lung, vendor nucleus polygons; byte-identical to ``shared/data/xenium_lung_segger``).
The breast crop (``sample_data/xenium_breast``, another panel and tissue) is kept out of training:
it is the transfer test of ``benchmarks/pretrained_transfer.py``.

Parameters: Segger's defaults (``TrainConfig()``: its epochs, model size, learning rate, seed 0,
``deterministic=True`` — one intra-op thread on the CPU, so a rerun repeats bit for bit) on the CPU,
through the user-level workflow, i.e. the same as

    segger train src/segger/sample_data/xenium_lung --output TMP --device cpu --seed 0

``TMP/model/best.pt`` (lowest validation loss) is bundled without its optimiser state as
``src/segger/models/pretrained/segger_xenium_small.pt``, declaring ``min_vocab_coverage`` 0 (meant
for any panel: unknown genes use the unknown-gene token). ``card.json`` and ``MODEL_CARD.md`` are
written beside it; their benchmark numbers are copied from ``benchmarks/results/pretrained_transfer.json``
(``python benchmarks/pretrained_transfer.py`` re-renders the card after measuring).

    python benchmarks/train_pretrained.py            # train, bundle, write the card
    python benchmarks/train_pretrained.py --check    # retrain in a temporary folder; compare weights
    python benchmarks/train_pretrained.py --card     # only re-render the card from the JSONs
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

TRAIN_DATA = REPO / "src" / "segger" / "sample_data" / "xenium_lung"
OUT_DIR = REPO / "src" / "segger" / "models" / "pretrained"
RESULTS = REPO / "benchmarks" / "results" / "pretrained_transfer.json"
SEED = 0
MAX_BYTES = 2 * 1024 * 1024
#: what the bundled checkpoint declares: every panel is allowed (see segger.workflows.check_vocabulary)
MIN_VOCAB_COVERAGE = 0.0
COMMAND = "python benchmarks/train_pretrained.py"
#: the methods of the transfer benchmark (benchmarks/pretrained_transfer.py), in table order
METHOD_TITLES = {
    "pretrained": "bundled model (trained on lung), no training",
    "pretrained_finetuned": "bundled model fine-tuned on this crop",
    "trained_here": "model trained on this crop (same settings)",
    "distance_here": "distance-only model trained on this crop",
    "nearest_nucleus": "nearest nucleus (graph, ≤ 12 µm)",
    "vendor": "vendor (cell_id)",
}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def state_sha256(state: dict) -> str:
    """Hash of the weights (names, dtypes, shapes, values): equal for bit-identical trainings."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def git_commit() -> tuple[str | None, bool | None]:
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                           timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src/segger"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return c, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def train(workdir: Path, epochs: int | None = None) -> tuple[dict, dict]:
    """Train with the defaults (seed :data:`SEED`, CPU) into ``workdir``; ``(payload of best.pt, info)``."""
    import torch

    from segger.training import TrainConfig
    from segger.workflows import train_model

    cfg = TrainConfig(seed=SEED) if epochs is None else TrainConfig(seed=SEED, epochs=epochs)

    def show(ev):
        if ev.stage == "train" and ev.message.endswith("done"):
            print(f"  {ev.message} {ev.metrics}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    res = train_model(TRAIN_DATA, workdir, show, train=cfg, device="cpu")
    seconds = time.perf_counter() - t
    payload = torch.load(workdir / "model" / "best.pt", map_location="cpu", weights_only=True)
    info = {"seconds": seconds, "epochs_run": len(res.history), "history": res.history, "warnings": res.warnings,
            "best_epoch": int(payload.get("epoch", 0)),
            # TrainConfig.deterministic on the CPU trains on one intra-op thread (segger.progress.deterministic_threads)
            "torch_threads": 1 if cfg.deterministic else torch.get_num_threads()}
    return payload, info


def bundle(payload: dict, target: Path) -> Path:
    """Write ``payload`` without its optimiser state, declaring the pretrained model's vocabulary rule."""
    import torch

    from segger.utils.atomic import atomic_path

    payload = {k: v for k, v in payload.items() if k != "optimizer_state"}
    payload["min_vocab_coverage"] = MIN_VOCAB_COVERAGE
    payload["pretrained"] = {"name": "segger_xenium_small", "trained_on": "segger/sample_data/xenium_lung",
                             "card": "MODEL_CARD.md"}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def training_card(payload: dict, info: dict, target: Path) -> dict:
    import pandas as pd
    import torch

    import segger
    from segger.io import read_sample

    sample = read_sample(TRAIN_DATA)
    commit, dirty = git_commit()
    size = target.stat().st_size
    if size >= MAX_BYTES:
        raise SystemExit(f"{target} is {size:,} bytes, over the {MAX_BYTES:,}-byte budget: use a smaller model")
    n_params = sum(v.numel() for v in payload["state_dict"].values())
    raw = pd.read_parquet(TRAIN_DATA / "transcripts.parquet", columns=["feature_name"])
    return {
        "name": "segger_xenium_small",
        "file": target.name,
        "file_bytes": size,
        "file_sha256": sha256_file(target),
        "weights_sha256": state_sha256(payload["state_dict"]),
        "n_parameters": int(n_params),
        "training_data": {
            "path": str(TRAIN_DATA.relative_to(REPO)),
            "description": "bundled Xenium crop of non-diseased human lung (10x Genomics preview data, via "
                           "dpeerlab/segger_dev tests); vendor nucleus polygons; see its ATTRIBUTION.md",
            "files": {p.name: sha256_file(p) for p in sorted(TRAIN_DATA.glob("*.parquet"))},
            "n_transcripts_raw": int(len(raw)),
            "n_transcripts_used": int(len(sample.transcripts)),
            "n_nuclei": int(len(sample.nuclei)),
            "n_genes_vocab": len(payload["vocab"]),
            "filters": "qv >= 20, control probes dropped (segger.io.read_sample defaults)",
            "not_trained_on": ["segger/sample_data/xenium_breast (the transfer test)",
                               "shared/data/xenium_breast_bidcell (tests/benchmarks only)"],
        },
        "parameters": {"train": payload.get("train_config"), "graph": payload.get("graph_params"),
                       "model": payload.get("model_config"), "link_head": payload.get("link_head")},
        "seed": SEED,
        "deterministic": bool((payload.get("train_config") or {}).get("deterministic", True)),
        "device": "cpu",
        "checkpoint_selected": "best.pt (lowest validation loss)",
        "best_epoch": info["best_epoch"],
        "epochs_run": info["epochs_run"],
        "validation_metrics": payload.get("metrics"),
        "training_seconds": round(info["seconds"], 1),
        "torch_threads": info["torch_threads"],
        "min_vocab_coverage": MIN_VOCAB_COVERAGE,
        "command": COMMAND,
        "equivalent_cli": f"segger train {TRAIN_DATA.relative_to(REPO)} --output TMP --device cpu --seed {SEED}",
        "versions": {"segger": segger.__version__, "torch": torch.__version__,
                     "python": ".".join(map(str, sys.version_info[:3]))},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": commit,
        "git_src_dirty": dirty,
    }


# ----------------------------------------------------------------------------------------------
# the card
# ----------------------------------------------------------------------------------------------
def _pct(v, signed=False):
    return "–" if v is None else (f"{v * 100:+.1f} %" if signed else f"{v * 100:.1f} %")


def _f3(v):
    return "–" if v is None else f"{v:.3f}"


def benchmark_section(results: dict) -> dict:
    """The numbers of the card, copied from the transfer JSON (per dataset, per method)."""
    out: dict = {"source": str(RESULTS.relative_to(REPO)), "command": (results.get("meta") or {}).get("command"),
                 "date": (results.get("meta") or {}).get("started"), "datasets": {}}
    for name, d in (results.get("results") or {}).items():
        if "methods" not in d:
            out["datasets"][name] = {"error": d.get("error")}
            continue
        out["datasets"][name] = {
            "description": d.get("description"), "role": d.get("role"),
            "gene_coverage": d.get("gene_coverage"), "unknown_gene_fraction": d.get("unknown_gene_fraction"),
            "methods": {m: {k: r.get(k) for k in ("fraction_assigned", "agreement_mutual", "n_cells",
                                                   "mecr_eq_vs_vendor", "mecr_eq_vs_nearest_nucleus",
                                                   "mecr_eq_vs_distance_here", "wall_s", "predict_s")}
                        for m, r in d["methods"].items()},
            "verdict": d.get("verdict"),
        }
    return out


def card_table(bench: dict) -> str:
    """Markdown table of the benchmark numbers (one row per dataset and method)."""
    lines = ["| dataset | genes unknown to the model | method | assigned | mutual agr. vs vendor | "
             "MECR eq. cov. vs vendor | vs nearest nucleus | vs distance-only | cells |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, d in bench["datasets"].items():
        if "methods" not in d:
            lines.append(f"| {name} | – | FAILED: {d.get('error')} | | | | | | |")
            continue
        first = True
        for m, r in d["methods"].items():
            lines.append(f"| {name if first else ''} | {_pct(d.get('unknown_gene_fraction')) if first else ''} | "
                         f"{METHOD_TITLES.get(m, m)} | {_pct(r.get('fraction_assigned'))} | "
                         f"{_f3(r.get('agreement_mutual'))} | {_pct(r.get('mecr_eq_vs_vendor'), True)} | "
                         f"{_pct(r.get('mecr_eq_vs_nearest_nucleus'), True)} | "
                         f"{_pct(r.get('mecr_eq_vs_distance_here'), True)} | {r.get('n_cells', '–')} |")
            first = False
    return "\n".join(lines)


def write_card(training: dict | None = None) -> dict:
    """Write ``card.json`` and ``MODEL_CARD.md``: ``training`` (or the one in card.json) + the benchmark
    numbers copied from :data:`RESULTS` when it exists."""
    from segger.models.pretrained import CARD_JSON, CARD_MD

    card_path = OUT_DIR / CARD_JSON
    if training is None:
        if not card_path.is_file():
            raise SystemExit(f"{card_path} is missing: run {COMMAND} first")
        training = {k: v for k, v in json.loads(card_path.read_text()).items() if k != "benchmark"}
    card = dict(training)
    if RESULTS.is_file():
        card["benchmark"] = benchmark_section(json.loads(RESULTS.read_text()))
    card_path.write_text(json.dumps(card, indent=1, default=str) + "\n")
    (OUT_DIR / CARD_MD).write_text(render_card(card))
    return card


def render_card(c: dict) -> str:
    td, p = c["training_data"], c["parameters"]
    tr = p.get("train") or {}
    vm = c.get("validation_metrics") or {}
    lines = [
        "# Model card: segger_xenium_small (bundled pretrained model)",
        "",
        f"Generated by `{c['command']}` (and `python benchmarks/pretrained_transfer.py` for the numbers); "
        "do not edit by hand. Machine-readable: `card.json`.",
        "",
        "## What it is",
        "",
        f"A small Segger link-prediction GNN ({c['n_parameters']:,} weights, {c['file_bytes'] / 1024:.0f} KiB) that "
        "scores transcript → nucleus links, so `segger predict INPUT --pretrained --output OUT` gives cells "
        "without training. Load it in Python with `segger.models.pretrained.load_pretrained()`; fine-tune from "
        "it with `segger segment INPUT --pretrained --epochs N --output OUT`.",
        "",
        "## Training data",
        "",
        f"* `{td['path']}` only — {td['description']}.",
        f"* {td['n_transcripts_used']:,} transcripts used ({td['n_transcripts_raw']:,} in the file; {td['filters']}), "
        f"{td['n_nuclei']:,} nuclei, a vocabulary of {td['n_genes_vocab'] - 1} genes + the unknown-gene token.",
        "* Not trained on: " + "; ".join(td["not_trained_on"]) + ".",
        "* File checksums (sha256): " + ", ".join(f"`{k}` {v[:12]}…" for k, v in td["files"].items()) + ".",
        "",
        "## Training",
        "",
        f"* Segger's default parameters (`TrainConfig()`): {tr.get('epochs')} epochs, learning rate "
        f"{tr.get('learning_rate')}, model {tr.get('hidden_channels')}/{tr.get('out_channels')} channels × "
        f"{tr.get('heads')} heads, {tr.get('num_mid_layers')} middle layers, link terms `{tr.get('link_terms')}`; "
        f"all parameters in `card.json`.",
        f"* Seed {c['seed']}, deterministic {c['deterministic']} (one intra-op thread on the CPU: a rerun repeats "
        f"the weights bit for bit; weights sha256 `{c['weights_sha256'][:16]}…`, checked by "
        f"`{c['command']} --check`), device {c['device']}, {c['training_seconds']} s on {c['torch_threads']} "
        "thread(s).",
        f"* Bundled checkpoint: {c['checkpoint_selected']}, epoch {c['best_epoch']} of {c['epochs_run']}; "
        f"validation AUROC {_f3(vm.get('val_auroc'))} (expression-only read-out {_f3(vm.get('val_auroc_dot'))}, "
        f"distance-only {_f3(vm.get('val_auroc_dist'))}), validation loss {_f3(vm.get('val_loss'))}.",
        f"* Same as `{c['equivalent_cli']}` then bundling `TMP/model/best.pt` without its optimiser state.",
        f"* torch {c['versions']['torch']}, segger {c['versions']['segger']}, Python {c['versions']['python']}; "
        f"{c['date']}; git commit `{(c.get('git_commit') or '?')[:10]}`"
        f"{' (src had uncommitted changes)' if c.get('git_src_dirty') else ''}.",
        "",
        "## Other panels",
        "",
        "The checkpoint declares `min_vocab_coverage` 0, so it is applied to any panel: genes it does not know "
        "use the unknown-gene token and a warning says how many. Its link score is geometry-dominated "
        "(see the numbers below), which is why it transfers.",
        "",
        "## Benchmark",
        "",
    ]
    b = c.get("benchmark")
    if not b:
        lines += ["Not measured yet: run `python benchmarks/pretrained_transfer.py`.", ""]
    else:
        lines += [f"From `{b['source']}` (`{b['command']}`, {b['date']}). Scored by `segger.validation` (one "
                  "scorer, as `benchmarks/quality.py`): assigned fraction, mutual best-match agreement with the "
                  "vendor cells (nucleated), MECR at equal coverage (relative; negative = purer than the other "
                  "method on the transcripts both assign).", "", card_table(b), ""]
        lines += _honest_notes(b)
    lines += ["## Limits", "",
              "* Trained on one 15k-transcript crop of one tissue: a first result, not a tuned model. Fine-tune "
              "on your data (`--pretrained --epochs N`) or train a model for a new panel.",
              "* Compare it with the nearest-nucleus rule above before trusting it: a high agreement with the "
              "vendor can be the trivial (distance-only) solution.", ""]
    return "\n".join(lines)


#: a difference smaller than this (mutual agreement, MECR relative) is called "about equal" in the card
MARGIN = 0.01


def _compare(diff_mut, rel_mecr) -> str:
    """Words for (mutual agreement difference, relative MECR at equal coverage) of A against B."""
    if diff_mut is None or rel_mecr is None:
        return "not comparable"
    better = diff_mut >= MARGIN or rel_mecr <= -MARGIN
    worse = diff_mut <= -MARGIN or rel_mecr >= MARGIN
    if better and not worse:
        return "better"
    if worse and not better:
        return "worse"
    return "mixed" if better and worse else "about equal"


def _honest_notes(b: dict) -> list[str]:
    """Sentences whose numbers are copied from the JSON: the bundled model against the nearest-nucleus
    rule, the distance-only model and a model trained on the target crop."""
    out = []
    for name, d in b["datasets"].items():
        ms = d.get("methods") or {}
        p, nn = ms.get("pretrained"), ms.get("nearest_nucleus")
        if not p or not nn:
            continue
        for m, who in (("pretrained", "the bundled model"), ("pretrained_finetuned",
                                                              "fine-tuned from it on the crop")):
            line = _verdict_line(name, d, (d.get("verdict") or {}).get(m) or {}, who)
            if line:
                out.append(line)
    if out:
        out = [f"Verdicts (\"better\"/\"worse\": a mutual-agreement difference or a relative MECR beyond "
               f"±{MARGIN:g}; \"mixed\": one better, one worse; else \"about equal\"):", ""] + out
    return out + [""] if out else []


def _verdict_line(name: str, d: dict, v: dict, who: str) -> str | None:
    parts = []
    for other, title in (("nearest_nucleus", "the nearest-nucleus rule"), ("distance_here", "the distance-only "
                         "model trained there"), ("trained_here", "the model trained there")):
        x = v.get(f"vs_{other}")
        if not x:
            continue
        parts.append(f"against {title}: {_compare(x['mutual_agreement_difference'], x['mecr_eq_relative'])} "
                     f"(mutual agreement {x['mutual_agreement_difference']:+.3f}, MECR at equal coverage "
                     f"{_pct(x['mecr_eq_relative'], True)}, assigned {x['assigned_fraction_difference'] * 100:+.1f} "
                     "points)")
    if not parts:
        return None
    return (f"* {name} ({_pct(d.get('unknown_gene_fraction'))} of its genes unknown to the bundled model), {who} "
            + "; ".join(parts) + ".")


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    from segger.models.pretrained import CHECKPOINT_NAME

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--card", action="store_true", help="only re-render MODEL_CARD.md / card.json from the JSONs")
    p.add_argument("--check", action="store_true", help="retrain in a temporary folder and compare the weights "
                                                        "with the bundled checkpoint (nothing is written)")
    p.add_argument("--epochs", type=int, default=None, help="override the default epochs (smoke runs only; "
                                                              "the bundled model uses the default)")
    a = p.parse_args(argv)
    target = OUT_DIR / CHECKPOINT_NAME
    if a.card:
        write_card()
        return 0
    with tempfile.TemporaryDirectory(prefix="segger-pretrain-") as tmp:
        print(f"training on {TRAIN_DATA} (seed {SEED}, defaults, CPU) ...", file=sys.stderr, flush=True)
        payload, info = train(Path(tmp) / "run", a.epochs)
    if a.check:
        import torch

        have = torch.load(target, map_location="cpu", weights_only=True)
        same = state_sha256(have["state_dict"]) == state_sha256(payload["state_dict"])
        print(f"retrained weights {'match' if same else 'DIFFER from'} {target} "
              f"({state_sha256(payload['state_dict'])[:16]}…)")
        return 0 if same else 1
    if a.epochs is not None:
        print("warning: --epochs overrides the default; this is not the documented bundled model", file=sys.stderr)
    bundle(payload, target)
    card = write_card(training_card(payload, info, target))
    print(f"wrote {target} ({card['file_bytes']:,} bytes, {card['n_parameters']:,} weights, best epoch "
          f"{card['best_epoch']}, {card['training_seconds']} s) and {OUT_DIR / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
