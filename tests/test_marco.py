"""The ``marco`` preset: the authors' checkpoint loaded exactly, against a plain-torch reference."""

import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_backbone
from official_dinov2 import official_patch_tokens, saved_official_state

from semcorr.errors import CheckpointError, WeightsUnavailableError
from semcorr.features import build_extractor
from semcorr.features.config import MarcoConfig
from semcorr.features.released.marco import MarcoExtractor
from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

WIDTH, DEPTH, BLOCKS = 32, 3, (1, 2)


def authors_state(seed=0):
    """Random adapters and upsampling head in the exact key layout of MARCO's state dict."""
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.2, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    state = {}
    for i in BLOCKS:
        p = f"dino.blocks.{i}.adapter."
        state.update(
            {
                p + "adapter_layer_norm_before.weight": normal(WIDTH, mean=1.0),
                p + "adapter_layer_norm_before.bias": normal(WIDTH),
                p + "down_proj.weight": normal(WIDTH // 2, WIDTH),
                p + "down_proj.bias": normal(WIDTH // 2),
                p + "up_proj.weight": normal(WIDTH, WIDTH // 2),
                p + "up_proj.bias": normal(WIDTH),
            }
        )
    for j in range(2):
        state.update(
            {
                f"upscale.{j}.conv1.weight": normal(WIDTH, WIDTH, 2, 2, std=0.1),
                f"upscale.{j}.conv1.bias": normal(WIDTH),
                f"upscale.{j}.conv2.weight": normal(WIDTH, 1, 3, 3),
                f"upscale.{j}.norm.weight": normal(WIDTH, mean=1.0),
                f"upscale.{j}.norm.bias": normal(WIDTH),
            }
        )
    return state


def reference_features(backbone_state, state, pixels):
    """MARCO's forward from its description: adapters beside the MLPs of blocks 1..2, final norm,
    two (ConvTranspose2d 2/2, GELU, depthwise 3x3 without bias, channel LayerNorm eps 1e-6) blocks."""

    def adapter(i, x):
        if i not in BLOCKS:
            return torch.zeros_like(x)
        p = f"dino.blocks.{i}.adapter."
        y = F.layer_norm(
            x,
            (WIDTH,),
            state[p + "adapter_layer_norm_before.weight"],
            state[p + "adapter_layer_norm_before.bias"],
            eps=1e-5,
        )
        y = F.relu(y @ state[p + "down_proj.weight"].T + state[p + "down_proj.bias"])
        return 0.1 * (y @ state[p + "up_proj.weight"].T + state[p + "up_proj.bias"])

    x = official_patch_tokens(backbone_state, pixels, heads=2, registers=True, adapter=adapter)
    for j in range(2):
        x = F.conv_transpose2d(x, state[f"upscale.{j}.conv1.weight"], state[f"upscale.{j}.conv1.bias"], stride=2)
        x = F.conv2d(F.gelu(x), state[f"upscale.{j}.conv2.weight"], padding=1, groups=WIDTH)
        x = F.layer_norm(
            x.permute(0, 2, 3, 1),
            (WIDTH,),
            state[f"upscale.{j}.norm.weight"],
            state[f"upscale.{j}.norm.bias"],
            eps=1e-6,
        ).permute(0, 3, 1, 2)
    return x


def args_of_a_class_not_here():
    """An object of a class in a module that is gone when the file is read (like MARCO's OmegaConf args)."""
    module = types.ModuleType("marco_training_config")

    class TrainConfig:
        def __init__(self):
            self.lr, self.model_cfg = 1e-4, {"n_upscale": 2, "adaptformer_stages": [15, 24]}

    TrainConfig.__module__, TrainConfig.__qualname__ = module.__name__, "TrainConfig"
    module.TrainConfig = TrainConfig
    return module


def save(tmp_path, content, name="marco_release.pth"):
    module = args_of_a_class_not_here()
    sys.modules[module.__name__] = module
    try:
        content = content(module) if callable(content) else content
        torch.save(content, tmp_path / name, _use_new_zipfile_serialization=False)  # as MARCO's save_on_master
    finally:
        del sys.modules[module.__name__]
    return tmp_path / name


def tiny_marco(tmp_path, weights, size=56):
    backbone_state = saved_official_state(tmp_path / "dinov2_tiny_reg.pth", WIDTH, DEPTH, registers=True, seed=4)
    backbone = tiny_backbone(registers=True, layers=DEPTH)
    load_official_checkpoint(backbone, tmp_path / "dinov2_tiny_reg.pth", registers=True)
    config = MarcoConfig(input_size=size, weights=str(weights), adapted_blocks=(BLOCKS[0], BLOCKS[-1] + 1))
    return backbone_state, MarcoExtractor(config, backbone=backbone)


class TestTinyAgainstReference:
    @pytest.mark.parametrize("layout", ["with-args", "model-only", "plain"])
    def test_features_equal_the_reference(self, tmp_path, one_thread, layout):
        state = authors_state()
        content = {
            "with-args": lambda m: {"model": state, "epoch": 7, "args": m.TrainConfig()},
            "model-only": {"model": state},
            "plain": state,
        }[layout]
        backbone_state, extractor = tiny_marco(tmp_path, save(tmp_path, content))
        assert "marco_training_config" not in sys.modules
        canvas = torch.rand(2, 3, 56, 56)
        with torch.no_grad():
            ours = extractor(canvas)
        reference = reference_features(backbone_state, state, canvas)
        assert ours.shape == (2, WIDTH, 16, 16) and extractor.grid_size() == (16, 16)
        assert (ours - reference).abs().max() < 1e-5

    def test_extract_keeps_the_raw_scale(self, tmp_path, one_thread):
        state = authors_state()
        backbone_state, extractor = tiny_marco(tmp_path, save(tmp_path, {"model": state}))
        image = torch.rand(3, 70, 40)
        fmap = extractor.extract(image)
        with torch.no_grad():
            raw = extractor(extractor.preprocess([image])[0])
        assert fmap.norms.shape == (1, 1, 16, 16) and fmap.norms.min() > 1.5  # raw features are far from unit length
        assert torch.allclose(fmap.raw_features(), raw, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize(
        "change,key",
        [
            ("drop", "dino.blocks.2.adapter.up_proj.bias"),
            ("drop", "upscale.1.norm.weight"),
            ("add", "dino.blocks.0.adapter.down_proj.weight"),
            ("add", "dino.blocks.2.block.norm1.weight"),
        ],
    )
    def test_missing_or_extra_key_is_refused_by_name(self, tmp_path, change, key):
        state = authors_state()
        if change == "drop":
            del state[key]
        else:
            state[key] = torch.zeros(WIDTH)
        with pytest.raises(CheckpointError, match=re.escape(key)):
            tiny_marco(tmp_path, save(tmp_path, {"model": state, "epoch": 1}))

    def test_a_file_that_would_run_code_is_refused(self, tmp_path):
        marker = tmp_path / "ran"

        class Payload:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').close()",))

        path = save(tmp_path, {"model": authors_state(), "epoch": 1, "args": Payload()})
        with pytest.raises(CheckpointError, match="refused"):
            tiny_marco(tmp_path, path)
        assert not marker.exists()


def test_full_size_on_meta():
    with torch.device("meta"):
        extractor = MarcoExtractor(random_weights=True)
    assert extractor.grid_size() == (220, 220) and extractor.config.input_size == 770
    assert sum(p.numel() for p in extractor.parameters()) == pytest.approx(323e6, rel=0.01)  # the authors' "323 M"
    adapted = [i for i, layer in enumerate(extractor.backbone.model.encoder.layer) if hasattr(layer, "adapter")]
    assert adapted == list(range(15, 24))


def test_offline_without_the_file_names_the_release():
    with pytest.raises(WeightsUnavailableError) as error:
        build_extractor("marco")
    assert "visinf/MARCO/releases" in str(error.value) and "--weights" in str(error.value)
