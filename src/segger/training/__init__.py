"""Training (pytorch_lightning), safe checkpoints and device selection."""

from segger.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from segger.training.train import (
    SeggerLightningModule,
    TrainConfig,
    TrainingRun,
    available_devices,
    edge_logits,
    message_graph,
    prepare_tiles,
    resolve_device,
    train,
)

__all__ = [
    "load_checkpoint", "read_checkpoint", "save_checkpoint", "SeggerLightningModule", "TrainConfig", "TrainingRun",
    "available_devices", "edge_logits", "message_graph", "prepare_tiles", "resolve_device", "train",
]
