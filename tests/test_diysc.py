"""The ``diy-sc`` preset: the authors' adapter file loaded exactly, against a plain-torch reference."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import data_path
from helpers import tiny_backbone
from official_dinov2 import assert_full_size_close, official_patch_tokens, saved_official_state
from PIL import Image

from semcorr.errors import CheckpointError, WeightsUnavailableError
from semcorr.features import build_extractor
from semcorr.features.config import DiyScConfig
from semcorr.features.released.diysc import DiyScExtractor
from semcorr.weights.dinov2_checkpoint import load_official_checkpoint
from semcorr.weights.safe_pickle import read_state_dict


def authors_file(channels, seed=0):
    """A random adapter in the exact layout of DIY-SC's ``best.pth`` (written from the description)."""
    g = torch.Generator().manual_seed(seed)
    hidden = channels // 4
    state = {
        "logit_scale": torch.tensor(2.7),
        "self_logit_scale": torch.tensor(2.3),
        "mixing_weights": torch.randn(1, generator=g),
    }
    for i, (cin, cout, k) in enumerate([(channels, hidden, 1), (hidden, hidden, 3), (hidden, channels, 1)], 1):
        state[f"bottleneck_layers.0.0.conv{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.3
        state[f"bottleneck_layers.0.0.conv{i}.norm.weight"] = 1 + 0.2 * torch.randn(cout, generator=g)
        state[f"bottleneck_layers.0.0.conv{i}.norm.bias"] = 0.2 * torch.randn(cout, generator=g)
    return state


def reference_adapter(state, tokens, groups):
    """The bottleneck block (1x1, 3x3, 1x1 convs with GroupNorm, identity shortcut, ReLU), weighted by
    softmax(mixing)."""

    def conv_norm(x, i, padding):
        x = F.conv2d(x, state[f"bottleneck_layers.0.0.conv{i}.weight"], padding=padding)
        return F.group_norm(
            x,
            groups,
            state[f"bottleneck_layers.0.0.conv{i}.norm.weight"],
            state[f"bottleneck_layers.0.0.conv{i}.norm.bias"],
            eps=1e-5,
        )

    out = F.relu(conv_norm(tokens, 1, 0))
    out = F.relu(conv_norm(out, 2, 1))
    out = F.relu(conv_norm(out, 3, 0) + tokens)
    return torch.softmax(state["mixing_weights"], 0)[0] * out


def tiny_diysc(tmp_path, adapter_state, size=112, groups=4):
    backbone_state = saved_official_state(tmp_path / "dinov2_tiny.pth", 32, 2, registers=False, seed=5)
    backbone = tiny_backbone(registers=False)
    load_official_checkpoint(backbone, tmp_path / "dinov2_tiny.pth", registers=False)
    torch.save(adapter_state, tmp_path / "best.pth")
    config = DiyScConfig(input_size=size, weights=str(tmp_path / "best.pth"), norm_groups=groups)
    return backbone_state, DiyScExtractor(config, backbone=backbone)


class TestTinyAgainstReference:
    def test_features_equal_the_reference(self, tmp_path, one_thread):
        adapter = authors_file(32)
        backbone_state, extractor = tiny_diysc(tmp_path, adapter)
        canvas = torch.rand(2, 3, 112, 112)
        with torch.no_grad():
            ours = extractor(canvas)
        tokens = official_patch_tokens(backbone_state, canvas, heads=2, registers=False, final_norm=False)
        assert ours.shape == (2, 32, 8, 8)
        assert (ours - reference_adapter(adapter, tokens, groups=4)).abs().max() < 1e-5

    def test_input_is_lanczos_on_a_centred_black_canvas(self, tmp_path, one_thread):
        _, extractor = tiny_diysc(tmp_path, authors_file(32))
        image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # H 30, W 40
        canvas, (geometry,) = extractor.preprocess([image])
        resized = np.asarray(Image.fromarray(image).resize((112, 84), Image.LANCZOS))
        expected = np.zeros((112, 112, 3), np.uint8)
        expected[14:98] = resized
        assert torch.equal((canvas[0] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected))
        assert geometry.offset == (0.0, 14.0)
        fmap = extractor.extract(image)
        assert fmap.features.shape == (1, 32, 8, 8) and torch.allclose(fmap.features.norm(dim=1), torch.ones(1, 8, 8))


class TestAuthorsFile:
    @pytest.mark.parametrize(
        "change,key",
        [
            ("drop", "bottleneck_layers.0.0.conv2.norm.bias"),
            ("add", "bottleneck_layers.0.0.shortcut.weight"),
            ("drop", "logit_scale"),
        ],
    )
    def test_missing_or_extra_key_is_refused_by_name(self, tmp_path, change, key):
        state = authors_file(32)
        if change == "drop":
            del state[key]
        else:
            state[key] = torch.zeros(32, 32, 1, 1)
        with pytest.raises(CheckpointError, match=re.escape(key)):
            tiny_diysc(tmp_path, state)

    def test_the_real_file_converts_with_every_key(self, tmp_path, one_thread):
        """The authors' released file (tensors saved on cuda:0) with a random full-size ViT-B/14 backbone."""
        path = data_path("weights", "diy-sc_dino_spair.pth")
        adapter = read_state_dict(path)
        assert len(adapter) == 12 and all(v.device.type == "cpu" for v in adapter.values())
        backbone_state = saved_official_state(tmp_path / "dinov2_vitb14_pretrain.pth", 768, 12, registers=False, seed=1)
        extractor = build_extractor(
            "diy-sc",
            weights=str(path),
            backbone=str(tmp_path / "dinov2_vitb14_pretrain.pth"),
            input_size=56,
            device="cpu",
        )
        canvas = torch.rand(1, 3, 56, 56)
        with torch.no_grad():
            ours = extractor(canvas)
        tokens = official_patch_tokens(backbone_state, canvas, heads=12, registers=False, final_norm=False)
        reference = reference_adapter(adapter, tokens, groups=32)
        assert_full_size_close(ours, reference)

    def test_offline_without_the_file_says_where_it_comes_from(self):
        with pytest.raises(WeightsUnavailableError) as error:
            build_extractor("diy-sc")
        message = str(error.value)
        assert "DIY-SC-torchhub" in message and "--weights" in message and "\n" not in message


def test_full_size_shapes_on_meta():
    with torch.device("meta"):
        extractor = DiyScExtractor(random_weights=True)
    assert extractor.grid_size() == (60, 60) and extractor.config.resize_mode == "letterbox"
    assert extractor.backbone.model.config.hidden_size == 768 and not hasattr(
        extractor.backbone.model.config, "num_register_tokens"
    )
