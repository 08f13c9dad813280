"""Safe checkpoints: round trip, refusal of pickled code, corrupt files."""

from __future__ import annotations

import os
import shlex

import numpy as np
import pytest
import torch

from segger.errors import CheckpointError
from segger.training import TrainingRun, load_checkpoint, read_checkpoint, save_checkpoint


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def trained(synthetic_graph, tiny_train_config, core_env_ctx):
    from segger.progress import run

    with core_env_ctx():
        tr = TrainingRun(synthetic_graph, tiny_train_config(epochs=2, val_fraction=0.0, tile_tx=200))
        run(tr.iter_train())
    return tr


@pytest.fixture
def ckpt(tmp_path, trained, synthetic_graph):
    return save_checkpoint(tmp_path / "sub" / "model.pt", trained.model, trained.model_config, synthetic_graph.vocab,
                           synthetic_graph.params, train_config=trained.config.to_dict(),
                           metrics={"val_auroc": 0.75}, epoch=2, global_step=17)


def _scores(model, bundle):
    """Embeddings and candidate link logits of the whole graph (the model's full output)."""
    from segger.data import TX_CAND
    from segger.data.graph import edge_geometry
    from segger.prediction.predict import embed

    z = embed(model, bundle.data, torch.device("cpu"))
    cand = bundle.data[TX_CAND].edge_index
    if hasattr(model, "logits"):
        logits = model.logits(z, cand, edge_geometry(bundle.data))
    else:
        logits = (z["tx"][cand[0]] * z["bd"][cand[1]]).sum(-1)
    return z, logits.detach()


def test_save_then_load_gives_identical_outputs(ckpt, trained, synthetic_graph):
    model, config, vocab, params, payload = load_checkpoint(ckpt)
    assert config == trained.model_config
    assert vocab == synthetic_graph.vocab
    assert params == synthetic_graph.params
    assert not model.training
    sa, sb = trained.model.state_dict(), model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    za, la = _scores(trained.model, synthetic_graph)
    zb, lb = _scores(model, synthetic_graph)
    assert torch.equal(za["tx"], zb["tx"]) and torch.equal(za["bd"], zb["bd"])
    assert torch.equal(la, lb)
    if hasattr(trained.model, "head"):
        assert model.head.terms == trained.model.head.terms


def test_payload_is_plain_data(ckpt, trained, synthetic_graph):
    p = read_checkpoint(ckpt)
    assert p["format"] == "segger-checkpoint" and p["format_version"] == 1
    assert p["vocab"] == list(synthetic_graph.vocab.genes)
    assert p["graph_params"] == synthetic_graph.params.to_dict()
    assert p["metrics"] == {"val_auroc": 0.75}
    assert p["epoch"] == 2 and p["global_step"] == 17
    assert p["train_config"]["hidden_channels"] == 16
    assert all(isinstance(v, torch.Tensor) for v in p["state_dict"].values())
    # written atomically: only the checkpoint in its folder
    assert sorted(os.listdir(ckpt.parent)) == ["model.pt"]


def test_pickled_code_is_refused_and_never_runs(tmp_path, synthetic_graph):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "segger-checkpoint", "format_version": 1, "state_dict": {}, "x": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(evil)
    assert "refused" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        TrainingRun(synthetic_graph, checkpoint=evil)  # fine-tuning from it
    assert not marker.exists(), "the pickled payload ran"


def test_the_evil_file_really_is_live(tmp_path):
    """Guard for the test above: an unsafe ``torch.load`` of the same kind of file does run it."""
    marker = tmp_path / "RAN"
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Evil(marker)}, evil)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_pipeline_refuses_evil_checkpoint(tmp_path, pkg_lung_dir):
    from segger.pipeline import segment

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "segger-checkpoint", "x": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError):
        segment(pkg_lung_dir, tmp_path / "out", checkpoint=evil, device="cpu")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


_ESCAPES = (
    "BUG segger/training/checkpoint.py read_checkpoint: the except clause around torch.load catches "
    "(UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) only; torch's "
    "weights-only loader raises {} for this file, which escapes as a raw exception instead of "
    "CheckpointError (the CLI then reports an 'internal error', exit 1, instead of exit 2)"
)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"}.", b"\x80\x02]q\x00."],
                         ids=["empty", "zip-magic-garbage", "pickled-empty-dict", "pickled-list"])
def test_corrupt_files_raise_checkpoint_error(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_truncated_checkpoints_raise_checkpoint_error(tmp_path, ckpt):
    raw = ckpt.read_bytes()
    escaped = {}
    for n in sorted({1, 100, len(raw) - 1, len(raw) - 100} | {int(len(raw) * f) for f in np.linspace(0.05, 0.95, 10)}):
        bad = tmp_path / f"trunc-{n}.pt"
        bad.write_bytes(raw[:n])
        try:
            read_checkpoint(bad)
        except CheckpointError:
            continue
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion message
            escaped[n] = type(exc).__name__
    assert not escaped, f"truncated to n bytes (of {len(raw)}): exception escaped {escaped}"


@pytest.mark.parametrize("content", [b"this is not a checkpoint\n", b"hello\n"], ids=["text", "short-text"])
def test_text_files_raise_checkpoint_error(tmp_path, content):
    bad = tmp_path / "notes.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError):
        read_checkpoint(bad)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path)  # a folder


def test_foreign_and_future_checkpoints(tmp_path, ckpt):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a segger checkpoint"):
        read_checkpoint(plain)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="not a segger checkpoint"):
        read_checkpoint(tensor_only)
    payload = read_checkpoint(ckpt)
    future = tmp_path / "future.pt"
    torch.save({**payload, "format_version": 99}, future)
    with pytest.raises(CheckpointError, match="format version"):
        read_checkpoint(future)


def test_incompatible_weights(tmp_path, ckpt):
    payload = read_checkpoint(ckpt)
    # weights of another model size
    wrong = dict(payload)
    wrong["model_config"] = {**payload["model_config"], "hidden_channels": 64}
    p1 = tmp_path / "wrong_size.pt"
    torch.save(wrong, p1)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(p1)
    # a state dict with a key missing
    sd = dict(payload["state_dict"])
    sd.pop(next(iter(sd)))
    p2 = tmp_path / "missing_key.pt"
    torch.save({**payload, "state_dict": sd}, p2)
    with pytest.raises(CheckpointError):
        load_checkpoint(p2)
    # a model config from the future
    p3 = tmp_path / "future_key.pt"
    torch.save({**payload, "model_config": {**payload["model_config"], "new_knob": 1}}, p3)
    with pytest.raises(CheckpointError):
        load_checkpoint(p3)


def test_overwrite_keeps_a_valid_file(tmp_path, trained, synthetic_graph):
    path = tmp_path / "m.pt"
    for epoch in (1, 2):
        save_checkpoint(path, trained.model, trained.model_config, synthetic_graph.vocab, synthetic_graph.params,
                        epoch=epoch)
        assert read_checkpoint(path)["epoch"] == epoch
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_training_run_save_checkpoint(tmp_path, trained):
    p = trained.save_checkpoint(tmp_path / "run.pt")
    model, *_ = load_checkpoint(p)
    sa, sb = trained.model.state_dict(), model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
