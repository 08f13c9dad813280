"""Per-viewer shared state so the dock widgets cooperate (graph → model → prediction → QC/export).

One :class:`SeggerState` per napari viewer (looked up by the real viewer object behind the
plugin's proxy; never a process-wide singleton). It only holds references and emits Qt signals
on the main thread; widgets listen to them to enable their controls.
"""

from __future__ import annotations

import weakref
from typing import Any

from qtpy.QtCore import QObject, Signal

_STATES: "weakref.WeakKeyDictionary[Any, SeggerState]" = weakref.WeakKeyDictionary()
_FALLBACK: dict[int, "SeggerState"] = {}


def _real(viewer: Any) -> Any:
    return getattr(viewer, "__wrapped__", viewer)


class SeggerState(QObject):
    """What the widgets share: the graph bundle, the trained model, the prediction and result."""

    bundle_changed = Signal()
    model_changed = Signal()
    prediction_changed = Signal()
    result_changed = Signal()
    #: a cell id picked in a widget (QC list, click on the canvas)
    cell_selected = Signal(str)
    #: the correction log was edited, undone/redone, or replaced (new data)
    corrections_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.bundle = None  # segger.data.GraphBundle
        self.bundle_source: dict = {}  # which layers / settings built it
        #: the segger.io.SpatialSample the graph's transcripts came from (None: a drawn/edited layer)
        self.spatial_sample = None
        self.run = None  # segger.training.TrainingRun (last training / fine-tuning)
        self.model = None  # torch.nn.Module used by Predict
        self.model_info: dict = {}
        self.prediction = None  # segger.prediction.Prediction (cached scores)
        self.result = None  # result DataFrame of the last assign()
        self.result_params: dict = {}
        #: where the data came from: {"path": folder/table or None, "sample": bundled sample key or None}
        self.data_source: dict = {}
        self.corrections = None  # segger.corrections.CorrectionStore of this data (sidecar-backed)
        #: every model of this session, oldest first: {"id", "label", "model", "run", "info", "source",
        #: "epochs", "metrics"} (source: "bundled", "trained", "fine-tuned" or "loaded")
        self.models: list[dict] = []
        self.model_id = 0  # id of ``model`` (0: none)
        self.prediction_model_id = 0  # id of the model that made ``prediction``

    # setters emit the signals (call on the main thread only)
    def set_bundle(self, bundle, source: dict | None = None) -> None:
        self.bundle = bundle
        self.bundle_source = dict(source or {})
        # a new graph invalidates predictions made on the old one (a model stays usable)
        self.prediction = None
        self.prediction_model_id = 0
        self.result = None
        self.bundle_changed.emit()
        self.prediction_changed.emit()
        self.result_changed.emit()

    def set_model(self, model, run=None, info: dict | None = None, label: str | None = None,
                  source: str | None = None) -> None:
        """Use ``model`` from now on; it joins the session's model history (see :meth:`revert`)
        with its source, epochs and last metrics."""
        self.model = model
        self.run = run
        self.model_info = dict(info or {})
        if model is None:
            self.model_id = 0
        else:
            self.model_id = self.next_model_id()
            hist = self.model_info.get("history") or []
            metrics = dict(hist[-1]) if hist else dict(self.model_info.get("metrics") or {})
            src = source or self.model_info.get("source") or (
                "fine-tuned" if self.model_info.get("finetuned") or self.model_info.get("finetuned_from")
                else "trained" if run is not None else "loaded")
            self.model_info["source"] = src
            self.models.append({"id": self.model_id, "label": label or f"model {self.model_id}",
                                "model": model, "run": run, "info": dict(self.model_info), "source": src,
                                "epochs": len(hist) if run is not None else int(self.model_info.get("epochs") or 0),
                                "metrics": metrics})
        self.model_changed.emit()
        self.prediction_changed.emit()  # the layers may now be stale

    def revert(self, model_id: int) -> None:
        """Use an earlier model of the history again (its layers are stale until Predict)."""
        entry = next((m for m in self.models if m["id"] == model_id), None)
        if entry is None:
            raise KeyError(model_id)
        self.model, self.run, self.model_info = entry["model"], entry["run"], dict(entry["info"])
        self.model_id = entry["id"]
        self.model_changed.emit()
        self.prediction_changed.emit()

    def next_model_id(self) -> int:
        return (self.models[-1]["id"] + 1) if self.models else 1

    def model_entry(self, model_id: int | None = None) -> dict | None:
        """The history entry of ``model_id`` (default: the current model)."""
        mid = self.model_id if model_id is None else model_id
        return next((m for m in self.models if m["id"] == mid), None)

    def bundled_entry(self) -> dict | None:
        """The bundled pretrained model's history entry, once it was loaded in this session."""
        return next((m for m in self.models if m.get("source") == "bundled"), None)

    def model_vocab(self):
        """The gene vocabulary the current model was trained with (None when unknown)."""
        vocab = self.model_info.get("vocab")
        if vocab is None and self.run is not None:
            vocab = getattr(getattr(self.run, "bundle", None), "vocab", None)
        return vocab

    def model_label(self, model_id: int | None = None) -> str:
        mid = self.model_id if model_id is None else model_id
        entry = next((m for m in self.models if m["id"] == mid), None)
        return entry["label"] if entry else "no model"

    def set_prediction(self, prediction) -> None:
        self.prediction = prediction
        self.prediction_model_id = self.model_id if prediction is not None else 0
        self.prediction_changed.emit()

    @property
    def stale(self) -> bool:
        """True when the layers show a prediction of another model than the current one."""
        return self.prediction is not None and self.prediction_model_id != self.model_id

    def reset_data(self) -> None:
        """A new dataset was opened: forget the graph, prediction and result (models stay)."""
        self.bundle = None
        self.bundle_source = {}
        self.spatial_sample = None
        self.prediction = None
        self.prediction_model_id = 0
        self.result = None
        self.result_params = {}
        self.bundle_changed.emit()
        self.prediction_changed.emit()
        self.result_changed.emit()

    def next_step(self) -> tuple[str, str]:
        """(step, what to do next) from the session state: the one hint every widget shows."""
        if self.bundle is None and self.result is not None:  # an output folder opened whole
            return "review", ("Next: review the cells of the opened output (Review/QC) or Export; build a "
                              "graph in Data to predict or correct.")
        if self.bundle is None:
            return "data", ("Next: open data (File ▸ Open Sample ▸ Segger, or File ▸ Open Folder), "
                            "then press Build graph in Data.")
        if self.model is None:
            return "train", ("Next: press Predict to segment with the bundled pretrained model, or train a "
                             "model (Train: fine-tunes the bundled model by default), or load a checkpoint.")
        if self.prediction is None:
            return "predict", "Next: press Predict."
        if self.stale:
            return "predict", (f"The layers show {self.model_label(self.prediction_model_id)}, not "
                               f"{self.model_label()}: press Predict to update them.")
        if self.result is None:
            return "predict", "Next: press Predict."
        n = len(self.corrections) if self.corrections is not None else 0
        if n == 0:
            return "review", "Next: review the cells (QC), correct what is wrong (Correct), then Export."
        return "correct", f"{n:,} correction(s): Fine-tune [F] to learn from them, or Export."

    def set_result(self, result, params: dict | None = None) -> None:
        self.result = result
        self.result_params = dict(params or {}) if params is not None else self.result_params
        self.result_changed.emit()

    def set_corrections(self, store, source: dict | None = None) -> None:
        self.corrections = store
        if source is not None:
            self.data_source = dict(source)
        self.corrections_changed.emit()


def bundled_available() -> bool:
    """True when this installation ships the bundled pretrained model (Predict works untrained)."""
    try:
        from segger.models.pretrained import bundled_checkpoint

        bundled_checkpoint()
    except Exception:  # noqa: BLE001 - a missing file is a one-line CheckpointError
        return False
    return True


def data_source_of(viewer: Any, layer_name: str | None) -> dict:
    """Where the transcripts layer ``layer_name`` was read from: ``{"path", "sample"}``.

    The reader and the sample-data loader store the source folder (``source``) and, for the
    bundled crops, the sample key (``sample``) in the layer's ``metadata["segger"]``.
    """
    if not layer_name:
        return {"path": None, "sample": None}
    for layer in viewer.layers:
        if layer.name == layer_name:
            meta = (layer.metadata or {}).get("segger", {}) or {}
            path = meta.get("source") or None
            return {"path": str(path) if path else None, "sample": meta.get("sample") or None}
    return {"path": None, "sample": None}


def get_state(viewer: Any) -> SeggerState:
    """The :class:`SeggerState` of ``viewer`` (created on first use)."""
    real = _real(viewer)
    try:
        state = _STATES.get(real)
        if state is None:
            state = SeggerState()
            _STATES[real] = state
            from segger.napari._inputs import adopt_output_results

            adopt_output_results(real, state)  # an output folder opened whole: its result is the session's
        return state
    except TypeError:  # not weak-referenceable
        return _FALLBACK.setdefault(id(real), SeggerState())
