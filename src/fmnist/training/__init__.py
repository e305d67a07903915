"""Training: the run's settings and recipes (`config`, no torch), batch augmentation, the epoch loop and the
trainer (schedule, checkpoints, early stop)."""

from fmnist.training.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str):  # torch is imported only when the trainer is used
    if name in ("TrainResult", "train"):
        from fmnist.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
