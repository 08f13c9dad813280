"""The dock widgets named in ``napari.yaml`` (each is a QWidget class taking ``napari_viewer``)."""

from segger.napari._panel import SeggerPanel
from segger.napari._w_correct import CorrectWidget
from segger.napari._w_data import DataGraphWidget
from segger.napari._w_export import ExportWidget
from segger.napari._w_predict import PredictWidget
from segger.napari._w_qc import QCWidget
from segger.napari._w_train import TrainWidget

__all__ = ["SeggerPanel", "DataGraphWidget", "TrainWidget", "PredictWidget", "QCWidget", "ExportWidget", "CorrectWidget"]
