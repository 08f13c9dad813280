"""Parameters declared once (segger.params): help on every field, the CLI and the docs generated from them."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from segger.cli.main import build_parser, main
from segger.corrections import FinetuneConfig
from segger.data import GraphParams
from segger.errors import SeggerInputError
from segger.params import check_fields, markdown_table, option_name
from segger.prediction import PredictConfig
from segger.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [GraphParams, TrainConfig, PredictConfig, FinetuneConfig]
#: which dataclasses each command takes its options from
COMMANDS = {"segment": [GraphParams, TrainConfig, PredictConfig], "train": [GraphParams, TrainConfig],
            "predict": [GraphParams, PredictConfig], "finetune": [GraphParams, PredictConfig, FinetuneConfig]}


def _fields():
    return [(cls, f) for cls in CLASSES for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls,f", _fields(), ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_every_field_has_help_text(cls, f):
    assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help text (declare it with param())"


def _help(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_every_field(command, capsys):
    out = _help(capsys, command)
    missing = [f"{cls.__name__}.{f.name} ({option_name(cls, f)})" for cls in COMMANDS[command]
               for f in dataclasses.fields(cls) if option_name(cls, f) not in out]
    assert not missing, f"segger {command} --help does not list {missing}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_defaults_are_the_dataclass_defaults(command, tmp_path):
    from segger.cli import main as cli

    argv = {"segment": [], "train": [], "predict": ["--checkpoint", "m.pt"],
            "finetune": ["--checkpoint", "m.pt", "--corrections", "c.csv"]}[command]
    a = build_parser().parse_args([command, "in", "-o", str(tmp_path / "o"), *argv])
    build = {GraphParams: cli._graph_params, TrainConfig: cli._train_config, PredictConfig: cli._predict_config,
             FinetuneConfig: cli._finetune_config}
    for cls in COMMANDS[command]:
        assert build[cls](a) == cls(), f"segger {command}: a default of {cls.__name__} differs from the library's"
    assert TrainConfig().epochs == 20 and GraphParams().dist_bd == 20.0  # one default, everywhere


def test_new_fields_reach_the_config(tmp_path):
    from segger.cli import main as cli

    a = build_parser().parse_args(["segment", "in", "-o", str(tmp_path / "o"), "--max-distance", "7",
                                   "--link-terms", "distance", "--expression-weight", "0.5", "--pseudo-gap", "1",
                                   "--expression-side", "both", "--ambiguity", "2", "--move-margin", "3",
                                   "--max-fragment-size", "50", "--max-fragment-extent", "12", "--no-fragments",
                                   "--no-deterministic", "--train-tile-tx", "500", "--predict-tile-tx", "900"])
    g, t, p = cli._graph_params(a), cli._train_config(a), cli._predict_config(a)
    assert g.max_distance == 7 and p.max_distance is None
    assert (t.link_terms, t.expression_weight, t.pseudo_gap, t.expression_side) == ("distance", 0.5, 1.0, "both")
    assert (p.ambiguity, p.move_margin, p.max_fragment_size, p.max_fragment_extent) == (2, 3, 50, 12)
    assert p.fragments is False and t.deterministic is False and p.deterministic is False
    assert t.tile_tx == 500 and p.tile_tx == 900


@pytest.mark.parametrize("argv,words", [
    (["--move-margin", "-1"], ["--move-margin", "move_margin", "0 to 100"]),
    (["--max-distance", "nan"], ["--max-distance", "max_distance"]),
    (["--train-tile-tx", "5"], ["--train-tile-tx", "tile_tx"]),
])
def test_out_of_range_option_is_one_line_naming_it(argv, words, capsys, tmp_path):
    rc = main(["segment", str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), *argv, "--quiet"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cls,kw", [
    (GraphParams, {"belongs": "nearest"}), (GraphParams, {"max_distance": -1.0}),
    (TrainConfig, {"expression_side": "protein"}), (TrainConfig, {"expression_weight": 101.0}),
    (TrainConfig, {"seed": -1}), (PredictConfig, {"ambiguity": float("inf")}),
    (PredictConfig, {"max_fragment_size": 1}), (FinetuneConfig, {"steps": 0}),
])
def test_validate_uses_the_declared_ranges(cls, kw):
    with pytest.raises(SeggerInputError, match=next(iter(kw))):
        cls(**kw).validate()


def test_check_fields_accepts_numpy_values():
    import numpy as np

    check_fields(GraphParams(k_tx=np.int64(3), dist_tx=np.float32(4.0), use_z=np.bool_(True)), "graph parameter")


def test_docs_parameter_tables_are_generated():
    spec = importlib.util.spec_from_file_location("segger_docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (ROOT / "docs" / "parameters.md").read_text()
    text = hooks.params_tables(page, ROOT / "src")
    assert "segger-params" not in text
    for cls in CLASSES:
        assert markdown_table(cls) in text
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text
    assert "parameters.md" in (ROOT / "mkdocs.yml").read_text()
