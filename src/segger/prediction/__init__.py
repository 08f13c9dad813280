"""Prediction: candidate scoring, assignment with a score cut-off, fragments, attention edges."""

from segger.prediction.attention import attention_edges
from segger.prediction.explain import explain_cell, explain_transcript
from segger.prediction.baseline import nearest_nucleus_assignment, nearest_nucleus_scores
from segger.prediction.predict import PredictConfig, Prediction, embed, iter_predict, predict

__all__ = ["attention_edges", "explain_cell", "explain_transcript", "nearest_nucleus_assignment", "nearest_nucleus_scores", "PredictConfig", "Prediction",
           "embed", "iter_predict", "predict"]
