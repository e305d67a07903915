"""The trainer: recipe defaults per architecture, LR schedule, early stopping, checkpoints, resume."""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist import data as fdata
from fmnist.errors import InvalidValue
from fmnist.evaluation.metrics import classification_report, reference_statistics, softmax
from fmnist.fileio import atomic_path
from fmnist.images.preprocess import Preprocessing, dataset_stats
from fmnist.models import count_flops, count_parameters, create_model
from fmnist.training.augment import Augment
from fmnist.training.bank import garment_bank, object_bank, outlier_bank, picture_bank
from fmnist.training.config import TrainConfig
from fmnist.training.loop import Loss, loss_and_accuracy, predict_logits, train_one_epoch

OUTLIER_COUNT = 12_000  # the outlier-exposure pool (TrainConfig.outliers): rendered once, cached
GARMENT_COUNT = 12_000  # the parametric garments' pool (TrainConfig.garments): rendered once, cached


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list
    preprocessing: Preprocessing
    test_report: dict
    reference: dict
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    params: int
    flops: int
    dataset_checksums: dict


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidValue("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise InvalidValue(f"unknown device {name!r}: expected cpu or cuda")
    return torch.device(name)


def _make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # no weight decay on biases and norm parameters
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    raise InvalidValue(f"unknown optimizer {cfg.optimizer!r}: expected adamw or sgd")


def _make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        if total < 4:  # too few steps for a warm-up and a decay phase (tiny test runs)
            return None
        # 25 % warm-up, but at least two steps so that each phase has a length
        pct = max(0.25, 2.0 / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.schedule == "constant":
        return None
    raise InvalidValue(f"unknown schedule {cfg.schedule!r}: expected onecycle, cosine or constant")


def _progress(total: int, desc: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()  # in a log file, an update a minute instead of ten a second
    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5 if tty else 60)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def train(
    cfg: TrainConfig,
    dataset: "fdata.FashionMNIST | None" = None,
    checkpoint: "str | Path | None" = None,
    resume: bool = False,
    quiet: bool = False,
    teacher: "Callable[[np.ndarray], np.ndarray] | None" = None,
    init_state: "dict | None" = None,
) -> TrainResult:
    """Train `cfg.arch` on the fixed split, keep the best-validation weights, evaluate on test.

    teacher: uint8 pixels (N, 28, 28) -> logits (N, 10), the model named by cfg.distill (the caller
    resolves it: training does not load artifacts); called once on the clean training images.
    init_state: the weights cfg.init names (a state dict; the caller loads them), the starting point.
    """
    if cfg.distill and teacher is None:
        raise InvalidValue(f"distill={cfg.distill!r} needs the teacher's logits function (fmnist train passes it)")
    if cfg.init and init_state is None:
        raise InvalidValue(f"init={cfg.init!r} needs the artifact's weights (fmnist train passes them)")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    ds = dataset or fdata.load(cfg.data_dir or None)
    (tr_x, tr_y), (va_x, va_y) = ds.split()
    te_x, te_y = ds.test_images, ds.test_labels
    if cfg.train_limit:
        tr_x, tr_y = tr_x[: cfg.train_limit], tr_y[: cfg.train_limit]
    if cfg.eval_limit:
        va_x, va_y = va_x[: cfg.eval_limit], va_y[: cfg.eval_limit]
        te_x, te_y = te_x[: cfg.eval_limit], te_y[: cfg.eval_limit]

    mean, std = dataset_stats(tr_x)
    pre = Preprocessing(mean=round(mean, 6), std=round(std, 6))
    train_t = torch.from_numpy(pre.normalize(tr_x))
    val_t = torch.from_numpy(pre.normalize(va_x))
    test_t = torch.from_numpy(pre.normalize(te_x))
    # as many clean (unaugmented) training images as validation ones: the honest train-vs-val gap
    train_probe_t = torch.from_numpy(pre.normalize(tr_x[: len(va_x)]))
    train_probe_y = tr_y[: len(va_x)]
    train_y = torch.from_numpy(tr_y.astype(np.int64))
    if device.type == "cuda":
        train_t, train_y = train_t.to(device), train_y.to(device)

    model = create_model(cfg.arch, **cfg.model_kwargs)
    if init_state is not None:
        try:
            model.load_state_dict(init_state, strict=True)
        except RuntimeError as e:
            raise InvalidValue(f"--init {cfg.init}: its weights do not fit {cfg.arch}{cfg.model_kwargs}: {e}") from None
    params, flops = count_parameters(model), count_flops(model)
    mem_fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=mem_fmt)

    steps_per_epoch = -(-len(train_t) // cfg.batch_size)
    optimizer = _make_optimizer(cfg, model)
    scheduler = _make_scheduler(cfg, optimizer, steps_per_epoch)
    teacher_logits = None
    if cfg.distill:
        _log(f"distilling from {cfg.distill}: its logits on {len(tr_x):,} clean training images", quiet)
        teacher_logits = torch.from_numpy(np.asarray(teacher(tr_x), dtype=np.float32))
    loss_fn = Loss(cfg.label_smoothing, teacher_logits, cfg.distill_alpha, cfg.distill_temperature)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    bank = None
    if cfg.pictures:
        bank = torch.from_numpy(picture_bank(tr_x, tr_y, cfg.picture_variants, cfg.seed, workers=cfg.threads,
                                             quiet=quiet))

    outliers = None
    if cfg.outliers:
        n_out = min(OUTLIER_COUNT, max(500, len(tr_x) // 4))  # a short run (train_limit) renders fewer
        n_obj = round(n_out * cfg.objects)
        px = outlier_bank(n_out - n_obj, cfg.seed, workers=cfg.threads, quiet=quiet)
        if n_obj:
            px = np.concatenate([px, object_bank(n_obj, cfg.seed, workers=cfg.threads)])
        pool = torch.from_numpy(pre.normalize(px))
        outliers = (pool.to(device), max(1, round(cfg.outliers * cfg.batch_size)), cfg.outlier_weight)

    garments = None
    if cfg.garments:
        n_g = min(GARMENT_COUNT, max(500, len(tr_x) // 2)) // 10 * 10
        gx, gy = garment_bank(n_g, cfg.seed, workers=cfg.threads, quiet=quiet)
        garments = (torch.from_numpy(pre.normalize(gx)).to(device), torch.from_numpy(gy).to(device),
                    max(1, round(cfg.garments * cfg.batch_size)))

    def normalize(px: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(pre.normalize(px.numpy()))

    augment = Augment(cfg.crop_padding, cfg.hflip, cfg.erasing, fill=(0.0 - pre.mean) / pre.std, seed=cfg.seed + 1,
                      pictures=cfg.pictures, bank=bank, normalize=normalize, elastic=cfg.elastic)

    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": 0, "state": None}
    start_epoch, elapsed = 1, 0.0
    ckpt_path = Path(checkpoint) if checkpoint else None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: checkpoint {ckpt_path} does not exist")
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["config"] != _comparable(asdict(cfg)):
            raise InvalidValue(
                f"checkpoint {ckpt_path} was made with a different configuration; "
                "resume with the same options or start a new run"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        shuffle_gen.set_state(state["shuffle_rng"])
        augment.gen.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        best = {"val_acc": state["best_val_acc"], "epoch": state["best_epoch"], "state": state["best_model"]}
        start_epoch, elapsed = state["epoch"] + 1, state["elapsed"]
        _log(f"resumed from {ckpt_path} at epoch {start_epoch}", quiet)

    _log(
        f"training {cfg.arch} ({params:,} params, {flops / 1e6:.1f} MFLOPs/image) on {len(train_t):,} images, "
        f"validating on {len(val_t):,}; device={device.type} threads={torch.get_num_threads()} "
        f"precision={cfg.precision}",
        quiet,
    )
    stopped_early = False
    epoch = start_epoch - 1
    # under one-cycle, validation is noisy around the LR peak: stopping there would stop too early
    min_epochs = cfg.min_epochs if cfg.min_epochs >= 0 else (cfg.epochs // 2 if cfg.schedule == "onecycle" else 0)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        bar = _progress(len(train_t), f"epoch {epoch}/{cfg.epochs}", quiet)
        train_loss, train_acc = train_one_epoch(
            model, train_t, train_y,
            optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, batch_size=cfg.batch_size,
            gen=shuffle_gen, augment=augment if augment.active else None, device=device,
            precision=cfg.precision, memory_format=mem_fmt, progress=bar, outliers=outliers, garments=garments,
        )
        if bar is not None:
            bar.close()
        val_logits = predict_logits(model, val_t, device=device, precision=cfg.precision, memory_format=mem_fmt)
        val_loss, val_acc = loss_and_accuracy(val_logits, va_y)
        clean_logits = predict_logits(model, train_probe_t, device=device, precision=cfg.precision,
                                      memory_format=mem_fmt)
        clean_loss, clean_acc = loss_and_accuracy(clean_logits, train_probe_y)
        dt = time.perf_counter() - t0
        elapsed += dt
        lr = optimizer.param_groups[0]["lr"]
        history.append(dict(
            epoch=epoch, train_loss=train_loss, train_acc=train_acc, train_eval_loss=clean_loss,
            train_eval_acc=clean_acc, val_loss=val_loss, val_acc=val_acc, lr=lr, seconds=dt,
        ))
        improved = val_acc > best["val_acc"] or cfg.keep == "last"
        if improved:
            best = {"val_acc": val_acc, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        _log(
            f"epoch {epoch:3d}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.4f}{' *' if improved else ''} | lr {lr:.2e} | {dt:.1f}s",
            quiet,
        )
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, cfg, epoch, model, optimizer, scheduler, shuffle_gen, augment,
                             history, best, elapsed)
        if cfg.patience and epoch >= min_epochs and epoch - best["epoch"] >= cfg.patience:
            _log(f"early stop: no validation improvement for {cfg.patience} epochs", quiet)
            stopped_early = True
            break

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()

    test_logits = predict_logits(model, test_t, device=device, precision="fp32")
    test_report = classification_report(te_y, test_logits.argmax(1))
    val_logits = predict_logits(model, val_t, device=device, precision="fp32")
    reference = reference_statistics(softmax(val_logits), va_x)
    reference["source"] = f"validation split ({len(va_x)} images held out from training)"
    _log(f"best epoch {best['epoch']}: val acc {best['val_acc']:.4f}; test acc {test_report['accuracy']:.4f} "
         f"macro-F1 {test_report['macro_f1']:.4f}; {elapsed:.0f}s of training", quiet)
    return TrainResult(
        model=model.cpu(), config=cfg, history=history, preprocessing=pre, test_report=test_report,
        reference=reference, best_epoch=best["epoch"], epochs_run=epoch, stopped_early=stopped_early,
        train_seconds=elapsed, params=params, flops=flops, dataset_checksums=ds.checksums,
    )


def _comparable(cfg: dict) -> dict:
    """The config fields that must match for a resume (device and threads may change)."""
    return {k: v for k, v in cfg.items() if k not in ("device", "threads", "data_dir")}


def _save_checkpoint(path, cfg, epoch, model, optimizer, scheduler, shuffle_gen, augment, history, best, elapsed):
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "config": _comparable(asdict(cfg)),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "shuffle_rng": shuffle_gen.get_state(),
        "augment_rng": augment.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "best_model": best["state"],
        "elapsed": elapsed,
    }
    with atomic_path(path) as tmp:  # a crash mid-save never leaves a broken checkpoint
        torch.save(state, tmp)


def provenance(cfg, result, command: str) -> dict:
    """What a trained artifact's manifest records of its training (manifest["training"])."""
    return {
        "command": command,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "duration_seconds": round(result.train_seconds, 1),
        "threads": torch.get_num_threads(),
        "dataset": {"name": "Fashion-MNIST", "checksums_sha256": result.dataset_checksums},
        "split": {"train": cfg.train_limit or 60000 - fdata.VAL_SIZE, "val": cfg.eval_limit or fdata.VAL_SIZE,
                  "seed": fdata.SPLIT_SEED},
    }
