import pytest
import torch

from fmnist.models import count_flops, count_parameters, create_model, list_models
from fmnist.models.vgg import CFGS


@pytest.mark.parametrize("name", list_models())
def test_output_shape_features_and_counts(name):
    model = create_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        again = model.forward_head(feats)
    assert logits.shape == (3, 10)
    assert feats.shape == (3, model.num_features)
    torch.testing.assert_close(again, logits)
    assert count_parameters(model) > 10_000
    assert count_flops(model) > 2 * count_parameters(model) // 2  # at least one MAC per weight-ish


def test_registry_has_the_seed_models():
    assert {"mlp", "lenet", "alexnet", "vgg", "smallcnn"} <= set(list_models())


def test_unknown_model_lists_known():
    with pytest.raises(KeyError, match="known models are .*lenet.*vgg"):
        create_model("resnet")
    with pytest.raises(TypeError, match="bad arguments for model 'mlp'"):
        create_model("mlp", depth=3)


def test_flops_match_hand_count():
    # LeNet: conv1 28*28*6*25, conv2 10*10*16*150, fc 400*120 + 120*84 + 84*10 MACs
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert count_flops(create_model("lenet")) == 2 * macs


@pytest.mark.parametrize("cfg", sorted(CFGS))
def test_vgg_is_built_from_its_config(cfg):
    model = create_model("vgg", cfg=cfg, batch_norm=False)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [v for v in CFGS[cfg] if v != "M"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.features)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_depth_from_kwargs():
    model = create_model("mlp", hidden=[512, 256, 128])
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 256, 128, 10]


def test_smallcnn_third_block_keeps_the_compute():
    two, three = create_model("smallcnn"), create_model("smallcnn", blocks=3, width=28)
    convs = [m.out_channels for m in three.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [28, 56, 112] and three(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # MACs by hand: 28x28x28x9 + 14x14x56x28x9 + 7x7x112x56x9 + 1008x128 + 128x10
    macs = 28 * 28 * 28 * 9 + 14 * 14 * 56 * 28 * 9 + 7 * 7 * 112 * 56 * 9 + 1008 * 128 + 128 * 10
    assert count_flops(three) == 2 * macs and count_flops(three) <= 1.5 * count_flops(two)
    with pytest.raises(ValueError, match="blocks must be 2 or 3"):
        create_model("smallcnn", blocks=4)
