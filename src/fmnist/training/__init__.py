"""Training: batch augmentation, the epoch loop and the trainer (schedule, checkpoints, early stop)."""

from fmnist.training.trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
