"""What a training run reads (TrainConfig, each field with its help: `fmnist train` makes its options from
them) and the recipe of each architecture. No torch here: the command line builds its parser from it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _opt(default, help: str, choices: "tuple | None" = None, cli: bool = True):
    """A TrainConfig field with its help text (and choices): `fmnist train` makes its options from these."""
    meta = {"help": help, "choices": choices, "cli": cli}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run reads. Each field is an `fmnist train --field-name` option, with this help."""

    arch: str = _opt("smallcnn", "architecture name (see `fmnist archs`)", cli=False)
    model_kwargs: dict = _opt({}, "model constructor arguments", cli=False)  # --kwargs JSON
    name: str = _opt("", "artifact name (default: the arch)")
    epochs: int = _opt(12, "epochs")
    batch_size: int = _opt(128, "images per training step")
    optimizer: str = _opt("adamw", "optimizer", ("adamw", "sgd"))
    lr: float = _opt(3e-3, "peak learning rate (of the one-cycle schedule)")
    weight_decay: float = _opt(5e-4, "weight decay")
    schedule: str = _opt("onecycle", "learning-rate schedule", ("onecycle", "cosine", "constant"))
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy")
    crop_padding: int = _opt(2, "random-crop padding in pixels (0: off)")
    hflip: bool = _opt(True, "random horizontal flip")
    erasing: float = _opt(0.0, "random-erasing probability (0: off)")
    elastic: float = _opt(0.0, "probability of a smooth random warp of ~1.5 px (0: off)")
    pictures: float = _opt(0.0, "probability of swapping a training image for a picture of it converted back as "
                                "/predict converts pictures (0: off; the round trips are rendered once and cached)")
    picture_variants: int = _opt(2, "picture round trips per training image")
    outliers: float = _opt(0.0, "outlier exposure: non-garment pictures added to every batch, as a share of its size, "
                                "taught to be unsure (a uniform target; 0: off)")
    outlier_weight: float = _opt(0.5, "weight of the outlier-exposure term in the loss")
    garments: float = _opt(0.0, "parametric garments (fmnist.pictures.garments: cuts and styles of the training families, never "
                                "the held-out ones) added to every batch with their labels, as a share of its size (0: off)")
    objects: float = _opt(0.0, "share of the outlier-exposure pool drawn from the parametric non-garment objects "
                               "(mugs, bottles, cars...; the rest: scenes, polygons, noise)")
    init: str = _opt("", "start from this artifact's weights (name[:version] or path; same arch and kwargs): "
                         "fine-tuning ('': random initialisation)")
    distill: str = _opt("", "teacher model (name[:version] or path) for knowledge distillation: its logits on the "
                            "clean images are soft targets ('': off)")
    distill_alpha: float = _opt(0.5, "weight of the distillation term (the rest: cross-entropy with the labels)")
    distill_temperature: float = _opt(4.0, "distillation temperature")
    keep: str = _opt("best", "which epoch's weights the artifact gets: the best validation accuracy, or the last (a "
                             "fine-tune from --init starts near its best clean accuracy: 'best' would keep epoch 1)",
                     ("best", "last"))
    patience: int = _opt(5, "early-stopping patience in epochs without validation improvement (0: off)")
    min_epochs: int = _opt(-1, "no early stop before this epoch (-1: half the epochs under one-cycle, else 0)")
    seed: int = _opt(0, "random seed")
    device: str = _opt("cpu", "device", ("cpu", "cuda"))
    threads: int = _opt(0, "intra-op CPU threads (0: all cores)")
    precision: str = _opt("fp32", "precision (bf16: autocast)", ("fp32", "bf16"))
    channels_last: bool = _opt(True, "channels-last memory format (2x faster convolutions on CPU, oneDNN)")
    train_limit: int = _opt(0, "train on the first N images only (0: all; quick runs)")
    eval_limit: int = _opt(0, "validate/test on the first N images only (0: all)")
    data_dir: str = _opt("", "directory with the four Fashion-MNIST .gz files", cli=False)  # data_opts has it

    def __post_init__(self):
        self.name = self.name or self.arch


# Recipes: what each architecture trains well with on 2 CPU cores (override any field from the CLI).
RECIPES: dict[str, dict] = {
    "mlp": dict(epochs=15, lr=1e-3, label_smoothing=0.0, crop_padding=0, hflip=False, weight_decay=0.0),
    "lenet": dict(epochs=15, lr=3e-3),
    "alexnet": dict(epochs=15, lr=2e-3, erasing=0.25),
    "vgg": dict(epochs=50, optimizer="sgd", lr=0.1, weight_decay=5e-4, erasing=0.25, precision="bf16", patience=8),
    # the shipped default: three conv blocks of 24-48-96 channels (8.9 MFLOPs), half of every batch swapped for
    # picture round trips (four per image, busy photographic backgrounds among their styles), an eighth of a
    # batch of non-garment pictures taught to be unsure (outlier exposure), the whole one-cycle schedule run out
    "smallcnn": dict(epochs=50, lr=3e-3, patience=0, pictures=0.5, picture_variants=4, outliers=0.125,
                     model_kwargs={"blocks": 3, "width": 24, "hidden": 256, "dropout": 0.1}),
}


def config_for(arch: str, **overrides) -> TrainConfig:
    """The recipe for `arch`, then any explicit overrides (None means: keep the recipe)."""
    values = {"arch": arch, **RECIPES.get(arch, {})}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**values)
