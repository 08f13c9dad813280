"""*Train / fine-tune* dock widget: ``TrainingRun.iter_train`` in a worker, live curve, cancel."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row
from segger.napari._forms import param_form
from segger.napari._plots import CurvePlot
from segger.progress import Progress

#: model-size presets → TrainConfig fields
MODEL_SIZES = {
    "tiny": dict(init_emb=8, hidden_channels=8, out_channels=8, heads=1, num_mid_layers=0),
    "small": dict(init_emb=16, hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1),
    "default": dict(init_emb=16, hidden_channels=32, out_channels=32, heads=3, num_mid_layers=3),
    "large": dict(init_emb=32, hidden_channels=64, out_channels=64, heads=4, num_mid_layers=3),
}


def _size_tip(name: str) -> str:
    p = MODEL_SIZES[name]
    return (f"{name}: gene embedding {p['init_emb']}, hidden {p['hidden_channels']}, output "
            f"{p['out_channels']}, {p['heads']} attention heads, {p['num_mid_layers']} middle layers")


class TrainWidget(SeggerWidget):
    """Train a new model or fine-tune a checkpoint on the current graph, in the background."""

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from segger.training import TrainConfig, available_devices

        form = self.group("Model")
        from segger.napari._state import bundled_available

        self.bundled_radio = QRadioButton("Fine-tune the bundled model")
        self.bundled_radio.setToolTip("Start from the bundled pretrained model (trained on the lung crop): "
                                      "a few epochs on your data are usually enough")
        self.new_radio = QRadioButton("New model")
        self.ckpt_radio = QRadioButton("Fine-tune checkpoint")
        has_bundled = bundled_available()
        self.bundled_radio.setEnabled(has_bundled)
        (self.bundled_radio if has_bundled else self.new_radio).setChecked(True)
        grp = QButtonGroup(self)
        grp.addButton(self.bundled_radio)
        grp.addButton(self.new_radio)
        grp.addButton(self.ckpt_radio)
        row = QWidget()
        hl = QVBoxLayout(row)  # one per line: side by side they made the dock 500 px wide
        hl.setContentsMargins(0, 0, 0, 0)
        hl.setSpacing(2)
        hl.addWidget(self.bundled_radio)
        hl.addWidget(self.new_radio)
        hl.addWidget(self.ckpt_radio)
        form.addRow(row)
        self.ckpt_path = QLineEdit()
        self.ckpt_path.setPlaceholderText("checkpoint .pt written by segger")
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("Choose a checkpoint file")
        prow = QWidget()
        pl = QHBoxLayout(prow)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.ckpt_path, 1)
        pl.addWidget(self.browse_button)
        add_row(form, "Checkpoint", prow, "Safe segger checkpoint to fine-tune (or to load without training)")
        self.size_combo = QComboBox()
        for i, name in enumerate(MODEL_SIZES):
            self.size_combo.addItem(name)
            self.size_combo.setItemData(i, _size_tip(name), 3)  # Qt.ToolTipRole
        self.size_combo.setCurrentText("default")
        add_row(form, "Model size", self.size_combo,
                "Size of a new model (a checkpoint keeps its own):\n" + "\n".join(_size_tip(n) for n in MODEL_SIZES))

        form = self.group("Training")
        # generated from TrainConfig's declarations (help, range, default: segger.params)
        self.train_form = param_form(TrainConfig, ("epochs", "learning_rate"),
                                     labels={"epochs": "Epochs", "learning_rate": "Learning rate"},
                                     options={"learning_rate": {"decimals": 5, "step": 1e-4}})
        self.train_form.add_rows(form)
        self.epochs, self.lr = self.train_form.native("epochs"), self.train_form.native("learning_rate")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        add_row(form, "Device", self.device_combo,
                "auto = the first CUDA GPU when there is one, else CPU; or pick one")

        row = QWidget()
        hl = QHBoxLayout(row)
        hl.setContentsMargins(0, 0, 0, 0)
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train (or fine-tune) on the graph built in 'Data & graph'")
        self.load_button = QPushButton("Load checkpoint")
        self.load_button.setToolTip("Use the checkpoint's model for Predict without training")
        self.save_button = QPushButton("Save checkpoint…")
        self.save_button.setToolTip("Save the current weights as a safe checkpoint")
        for b in (self.train_button, self.load_button, self.save_button):
            hl.addWidget(b)
        self.body.addWidget(row)
        self.plot = CurvePlot(title="training curve")
        self.plot.setToolTip(
            "loss (left axis) per epoch; val AUROC (expression) = how well the expression term alone "
            "separates the held-out links (right axis): the honest number, since distance alone already "
            "gives val AUROC (all) ≈ 1 on nucleus links")
        self.body.addWidget(self.plot)
        self.info = QLabel("No model yet.")
        self.info.setWordWrap(True)
        self.body.addWidget(self.info)
        self._build_history()
        self.body.addStretch(1)

        self.browse_button.clicked.connect(self._browse)
        self.train_button.clicked.connect(self.train)
        self.load_button.clicked.connect(self.load)
        self.save_button.clicked.connect(self._save_dialog)
        self.new_radio.toggled.connect(self.refresh_enabled)
        self.state.bundle_changed.connect(self.refresh_enabled)
        self.state.model_changed.connect(self._on_model)
        self._note = ""
        self.set_controls(self.train_button, self.load_button, self.save_button, self.epochs, self.lr,
                          self.device_combo, self.size_combo, self.ckpt_path, self.browse_button,
                          self.new_radio, self.ckpt_radio, self.bundled_radio, self.history_combo,
                          self.revert_button)
        self.refresh_enabled()

    # ---------------------------------------------------------------------------------------
    def refresh_enabled(self) -> None:
        if self.busy:
            return
        has_bundle = self.state.bundle is not None
        self.train_button.setEnabled(has_bundle)
        self.load_button.setEnabled(has_bundle)
        self.save_button.setEnabled(self.state.run is not None)
        self.size_combo.setEnabled(self.new_radio.isChecked())
        self.info.setText(self.model_text() + (f" {self._note}" if self._note else ""))
        self.show_history()
        self._fill_history()

    def _on_model(self) -> None:
        self._note = ""
        self.refresh_enabled()

    def model_text(self) -> str:
        """What Train says about the current model (from the shared state)."""
        st = self.state
        if st.model is None:
            return "No model yet: press Train (a tiny model trains in seconds on a crop)."
        hist = st.model_info.get("history") or []
        last = hist[-1] if hist else {}
        parts = [f"Current model: {st.model_label()}"]
        if hist:
            parts.append(f"{len(hist)} epoch(s)")
        dot = last.get("val_auroc_dot", float("nan"))
        if isinstance(dot, float) and math.isfinite(dot):
            parts.append(f"val AUROC (expression) {dot:.3f}")
        if st.model_info.get("seconds"):
            parts.append(f"{st.model_info['seconds']:.1f} s")
        text = ", ".join(parts) + "."
        if st.model_info.get("checkpoint"):
            text += f" Loaded {Path(st.model_info['checkpoint']).name}."
        return text

    def show_history(self) -> None:
        """Draw the current model's epochs (a reopened Train keeps its curve)."""
        if self.busy:
            return
        hist = self.state.model_info.get("history") or []
        self.plot.clear()
        for rec in hist:
            self._plot_epoch(rec)

    def _plot_epoch(self, m: dict) -> None:
        x = float(m.get("epoch", 0))
        for key, name in (("loss", "loss"), ("val_loss", "val loss"), ("val_auroc_dot", "val AUROC (expression)"),
                          ("val_auroc", "val AUROC (all)")):
            v = m.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.plot.add_point(name, x, float(v))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Segger checkpoint", "", "Checkpoints (*.pt *.ckpt);;All (*)")
        if path:
            self.ckpt_path.setText(path)
            self.ckpt_radio.setChecked(True)

    def config(self):
        size = MODEL_SIZES[self.size_combo.currentText()]
        return self.train_form.value(device=self.device_combo.currentText(), **size)

    def _checkpoint(self) -> str | None:
        if self.new_radio.isChecked():
            return None
        if self.bundled_radio.isChecked():
            from segger.models.pretrained import bundled_checkpoint

            return str(bundled_checkpoint())
        text = self.ckpt_path.text().strip()
        if not text:
            raise SeggerInputError("no checkpoint chosen; pick a .pt file or choose 'New model'")
        if not Path(text).is_file():
            raise SeggerInputError(f"checkpoint {text} does not exist; pick a .pt file written by segger")
        return text

    @staticmethod
    def _bundle_for(bundle, vocab, checkpoint=None, payload=None):
        """``(bundle, rebuilt, warnings)``: the graph with ``vocab``'s gene tokens, by the CLI's one
        rule (:func:`segger.workflows.bundle_for_vocabulary`: a checkpoint knowing < 50 % of the panel's
        genes is refused with the CLI's message, unless its payload declares its own minimum, as the
        bundled model does)."""
        from segger.workflows import bundle_for_vocabulary, vocab_rule

        b, warnings = bundle_for_vocabulary(bundle, vocab, checkpoint, min_coverage=vocab_rule(payload))
        return b, b is not bundle, warnings

    # ---------------------------------------------------------------------------------------
    def train(self) -> None:
        """Start training / fine-tuning (button)."""
        if self.state.bundle is None:
            self.guarded(self._raise_no_graph)
            return
        config = self.guarded(self.config)
        if config is None:
            return
        try:
            ckpt = self._checkpoint()
        except SeggerInputError as exc:
            self.guarded(self._reraise, exc)
            return
        bundle = self.state.bundle
        from segger.utils.outdir import user_cache_dir

        autosave = user_cache_dir("models", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
                                            f"model{self.state.next_model_id()}")
        holder: dict = {"previous": self.state.model, "autosave": autosave,
                        "source": ("fine-tuned" if ckpt is not None else "trained"),
                        "from": ("the bundled model" if self.bundled_radio.isChecked()
                                 else Path(ckpt).name if ckpt else None)}

        def job():
            from segger.training import TrainingRun

            b, rebuilt = bundle, False
            if ckpt is not None:
                from segger.training import load_checkpoint

                yield Progress("train", 0, None, "reading the checkpoint")
                _, _, vocab, _, payload = load_checkpoint(ckpt)
                if list(vocab.genes) != list(bundle.vocab.genes):
                    yield Progress("train", 0, None, "matching the genes to the checkpoint's vocabulary")
                b, rebuilt, warnings = self._bundle_for(bundle, vocab, ckpt, payload)
                holder["warnings"] = warnings
            yield Progress("train", 0, None, "building the model")
            # auto-save: best/last checkpoints of every run in the user cache, so a crash or a closed
            # window never loses a trained model (the model history records where)
            run = TrainingRun(b, config, checkpoint=ckpt, checkpoint_dir=autosave)
            holder.update(run=run, bundle=b, rebuilt=rebuilt)
            yield from run.iter_train()
            return holder

        self.plot.clear()
        self._last_step = 0
        self._t0 = time.perf_counter()
        self._epochs_total = int(config.epochs)
        self.job.start(job, desc="Train", on_yield=self._on_progress, on_done=self._apply,
                       on_cancel=lambda: self._apply(holder, cancelled=True))

    def _warn(self, warnings) -> None:
        if warnings:
            from napari.utils.notifications import show_warning

            for w in warnings:
                show_warning(w)

    def _raise_no_graph(self):
        raise SeggerInputError("no graph yet; build it in 'Data & graph' first")

    @staticmethod
    def _reraise(exc):
        raise exc

    def _on_progress(self, ev: Progress) -> None:
        m = ev.metrics or {}
        if "val_auroc" in m:  # end of an epoch
            self._plot_epoch(m)
            epoch = int(m.get("epoch", 0))
            dot = m.get("val_auroc_dot", float("nan"))
            loss = m.get("loss", float("nan"))
            per = (time.perf_counter() - self._t0) / max(epoch, 1)
            left = max(self._epochs_total - epoch, 0) * per
            self.info.setText(
                f"epoch {epoch}/{self._epochs_total}: loss {loss:.4f}"
                + (f", val AUROC (expression) {dot:.3f}" if math.isfinite(dot) else "")
                + f"; {per:.1f} s/epoch, about {left:.0f} s left"
            )
        elif "loss" in m:
            self._last_step = ev.step

    def _apply(self, holder: dict, cancelled: bool = False) -> None:
        run = holder.get("run")
        if run is None:  # cancelled before the model existed
            self.info.setText("Training cancelled before it started; no model.")
            return
        from napari.utils.notifications import show_info

        hist = run.history
        previous = holder.get("previous")
        if cancelled and previous is not None:
            # a cancelled re-train never replaces a good model: the layers were made with it
            msg = f"Training cancelled: kept {self.state.model_label()}"
            show_info(msg)
            self._note = "Training cancelled: the cancelled run's weights were discarded."
            self.info.setText(self.model_text() + " " + self._note)
            self.panel.status.setText("Train: cancelled (previous model kept)")
            return
        self._warn(holder.get("warnings") or [])
        if holder.get("rebuilt"):
            self.state.set_bundle(holder["bundle"], {**self.state.bundle_source, "vocab": "checkpoint"})
        seconds = float(run.info.get("seconds", 0) or (time.perf_counter() - self._t0))
        saved = holder.get("autosave")
        saved = next((str(Path(saved) / f) for f in ("best.pt", "last.pt") if saved and (Path(saved) / f).is_file()),
                     None)
        info = {"history": list(hist), "cancelled": cancelled, "config": run.config.to_dict(), "seconds": seconds,
                "vocab": run.bundle.vocab,
                "finetuned_from": holder.get("from"), "checkpoint": saved}
        n = self.state.next_model_id()
        kind = holder.get("source", "trained")
        if holder.get("from") == "the bundled model":
            kind = "fine-tuned from the bundled model"
        label = f"model {n} ({kind}, {len(hist)} epoch(s){', cancelled' if cancelled else ''})"
        self.state.set_model(run.model, run, info, label=label, source=holder.get("source", "trained"))
        self.refresh_enabled()
        if cancelled:
            msg = f"Training cancelled after {len(hist)} epoch(s): weights kept"
            show_info(msg)
            self._note = msg + "."
            self.info.setText(self.model_text() + " " + self._note)
            self.panel.status.setText("Train: cancelled (weights kept)")
        else:
            self._note = "Next: Predict."
            self.info.setText(self.model_text() + " " + self._note)

    # ---------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load a checkpoint's model for Predict, without training (button)."""
        if self.state.bundle is None:
            self.guarded(self._raise_no_graph)
            return
        try:
            ckpt = self._checkpoint() if self.ckpt_path.text().strip() else None
            if ckpt is None:
                raise SeggerInputError("no checkpoint chosen; pick a .pt file first")
        except SeggerInputError as exc:
            self.guarded(self._reraise, exc)
            return
        bundle = self.state.bundle

        def job():
            from segger.training import load_checkpoint

            yield Progress("load", 0, 2, "reading the checkpoint")
            model, mcfg, vocab, _, payload = load_checkpoint(ckpt)
            yield Progress("load", 1, 2, "matching genes")
            b, rebuilt, warnings = self._bundle_for(bundle, vocab, ckpt, payload)
            model.eval()
            return model, b, rebuilt, payload, warnings

        def done(out):
            model, b, rebuilt, payload, warnings = out
            self._warn(warnings)
            if rebuilt:
                self.state.set_bundle(b, {**self.state.bundle_source, "vocab": "checkpoint"})
            metrics = payload.get("metrics", {}) or {}
            self.state.set_model(model, None, {"checkpoint": ckpt, "metrics": metrics, "vocab": b.vocab,
                                               "history": [metrics] if metrics else []},
                                 label=f"{Path(ckpt).name}", source="loaded")
            self._note = "Next: Predict."
            self.info.setText(self.model_text() + " " + self._note)

        self.job.start(job, desc="Load checkpoint", on_done=done)

    # --- the session's models: which one is current, revert to an earlier one -----------------
    def _build_history(self) -> None:
        form = self.group("Model history")
        self.history_combo = QComboBox()
        add_row(form, "models", self.history_combo,
                "Every model of this session (bundled, trained, fine-tuned, loaded) with its epochs and metrics")
        self.revert_button = QPushButton("Revert to this model")
        self.revert_button.setToolTip("Use the chosen earlier model again (the layers keep showing the model "
                                      "that made them until you press Predict)")
        form.addRow(self.revert_button)
        self.history_combo.currentIndexChanged.connect(lambda *_: self._refresh_revert())
        self.revert_button.clicked.connect(self.revert)

    @staticmethod
    def history_text(entry: dict) -> str:
        m = entry.get("metrics") or {}
        parts = [entry["label"], entry.get("source", "")]
        if entry.get("epochs"):
            parts.append(f"{entry['epochs']} epoch(s)")
        dot = m.get("val_auroc_dot")
        if isinstance(dot, (int, float)) and math.isfinite(dot):
            parts.append(f"val AUROC (expression) {dot:.3f}")
        return " · ".join(p for p in parts if p)

    def _fill_history(self) -> None:
        st = self.state
        combo = self.history_combo
        combo.blockSignals(True)
        combo.clear()
        for m in st.models:
            combo.addItem(self.history_text(m) + (" (current)" if m["id"] == st.model_id else ""), m["id"])
        combo.setCurrentIndex(max(combo.findData(st.model_id), 0))
        combo.blockSignals(False)
        self._refresh_revert()

    def _refresh_revert(self) -> None:
        data = self.history_combo.currentData()
        self.revert_button.setEnabled(not self.busy and isinstance(data, int) and data != self.state.model_id)

    def revert(self) -> None:
        """Use the model chosen in the history again (button)."""
        data = self.history_combo.currentData()
        if not isinstance(data, int) or data == self.state.model_id:
            return
        self.state.revert(data)
        self._note = "Reverted: press Predict to update the layers."
        self.info.setText(self.model_text() + " " + self._note)
        self.panel.status.setText(f"Reverted to {self.state.model_label()}")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint", "segger_model.pt", "Checkpoints (*.pt)")
        if path:
            self.save_checkpoint(path)

    def save_checkpoint(self, path: str | Path) -> Path | None:
        """Save the current run's weights to ``path`` (a safe checkpoint)."""
        run = self.state.run
        if run is None:
            self.guarded(self._reraise, SeggerInputError("nothing to save; train a model first"))
            return None
        out = self.guarded(run.save_checkpoint, path)
        if out is not None:
            from napari.utils.notifications import show_info

            show_info(f"checkpoint saved: {out}")
            self.panel.status.setText(f"saved {out}")
        return out
