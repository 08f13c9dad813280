"""Prediction: candidate scoring, assignment with a score cut-off, fragments, attention edges."""

from segger.prediction.attention import attention_edges, transcript_attention
from segger.prediction.explain import explain_cell, explain_transcript
from segger.prediction.baseline import nearest_nucleus_assignment, nearest_nucleus_scores
from segger.prediction.predict import AssignCodes, PredictConfig, Prediction, embed, iter_predict, predict

__all__ = ["attention_edges", "transcript_attention", "explain_cell", "explain_transcript", "nearest_nucleus_assignment", "nearest_nucleus_scores", "AssignCodes", "PredictConfig", "Prediction",
           "embed", "iter_predict", "predict"]
