import numpy as np
import pytest
import torch

from fmnist.training.augment import random_crop, random_erasing, random_hflip
from fmnist.training.config import config_for
from fmnist.training.trainer import train


def test_random_crop_shifts_content_within_padding():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    gen = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, -0.5, gen)
    assert out.shape == x.shape
    assert torch.all((out == 1).sum(dim=(1, 2, 3)) == 64)  # the square is never cut: it is 10 px from every edge
    ys = out[:, 0].amax(dim=2).argmax(dim=1)
    assert set(ys.tolist()) <= set(range(8, 13)) and len(set(ys.tolist())) > 1


def test_hflip_flips_some_images():
    x = torch.arange(28.0).repeat(32, 1, 28, 1)
    out = random_hflip(x, torch.Generator().manual_seed(1))
    flipped = (out[:, 0, 0, 0] == 27).sum().item()
    assert 0 < flipped < 32 and torch.equal(out[out[:, 0, 0, 0] == 0], x[out[:, 0, 0, 0] == 0])


def test_random_erasing_changes_a_rectangle():
    x = torch.zeros(16, 1, 28, 28)
    out = random_erasing(x, torch.Generator().manual_seed(0), p=1.0)
    changed = (out != 0).sum(dim=(1, 2, 3))
    assert torch.all(changed > 0) and torch.all(changed <= 0.2 * 28 * 28 + 28)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown training option"):
        config_for("smallcnn", epoch=3)


@pytest.mark.realdata
@pytest.mark.slow
def test_short_real_training_run_learns(real_data, tmp_path):
    # the shipped recipe (pictures, outlier exposure) on a short run; one round trip per image keeps it short
    cfg = config_for("smallcnn", epochs=2, train_limit=3000, eval_limit=1000, threads=1, seed=3, picture_variants=1)
    assert cfg.outliers > 0 and cfg.pictures > 0
    result = train(cfg, dataset=real_data, checkpoint=tmp_path / "ck.pt", quiet=True)
    assert result.test_report["n"] == 1000
    assert result.test_report["accuracy"] > 0.65  # chance is 0.10
    assert len(result.history) == 2 and result.history[1]["val_acc"] > 0.6
    ref = result.reference
    assert abs(sum(ref["class_distribution"]) - 1) < 1e-9 and sum(ref["confidence_histogram"]["counts"]) == 1000


@pytest.mark.realdata
def test_training_is_reproducible_and_resumable(real_data, tmp_path):
    kw = dict(epochs=2, train_limit=1000, eval_limit=300, threads=1, seed=7, patience=0)
    full = train(config_for("lenet", **kw), dataset=real_data, quiet=True)
    again = train(config_for("lenet", **kw), dataset=real_data, quiet=True)
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in again.history]

    interrupted = tmp_path / "c.pt"
    _kill_after_epoch_1(kw, real_data, interrupted)
    assert torch.load(interrupted, weights_only=True)["epoch"] == 1
    resumed = train(config_for("lenet", **kw), dataset=real_data, checkpoint=interrupted, resume=True, quiet=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history], [h["val_loss"] for h in full.history],
                               rtol=1e-5)
    assert resumed.test_report["accuracy"] == pytest.approx(full.test_report["accuracy"], abs=1e-3)


def _kill_after_epoch_1(kw, real_data, path):
    """A run with the same config killed after epoch 1: raise from the epoch-1 checkpoint write."""
    import fmnist.training.trainer as trainer

    real_save = trainer._save_checkpoint

    def save_then_die(p, cfg, epoch, *args):
        real_save(p, cfg, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    trainer._save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config_for("lenet", **kw), dataset=real_data, checkpoint=path, quiet=True)
    finally:
        trainer._save_checkpoint = real_save


@pytest.mark.realdata
def test_resume_refuses_a_different_config(real_data, tmp_path):
    kw = dict(epochs=1, train_limit=500, eval_limit=200, threads=1)
    train(config_for("lenet", **kw), dataset=real_data, checkpoint=tmp_path / "a.pt", quiet=True)
    with pytest.raises(ValueError, match="different configuration"):
        train(config_for("lenet", **{**kw, "lr": 0.5}), dataset=real_data, checkpoint=tmp_path / "a.pt",
              resume=True, quiet=True)
