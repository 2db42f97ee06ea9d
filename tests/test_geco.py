"""The ``geco`` preset: the authors' LoRA file folded in exactly, against a plain-torch reference."""

import re

import pytest
import torch
from conftest import data_path
from helpers import tiny_backbone
from official_dinov2 import assert_full_size_close, official_patch_tokens, saved_official_state

from semcorr.errors import CheckpointError, WeightsUnavailableError
from semcorr.features import build_extractor
from semcorr.features.config import GecoConfig
from semcorr.features.released.geco import GecoExtractor
from semcorr.weights.dinov2_checkpoint import load_official_checkpoint
from semcorr.weights.safe_pickle import read_state_dict


def authors_file(width, depth, rank=3, seed=0):
    """Random LoRA weights in the layout of GECO's ``save_parameters``: all w_a, then all w_b."""
    g = torch.Generator().manual_seed(seed)
    w_a = {f"w_a_{i:03d}": torch.randn(rank, width, generator=g) * 0.3 for i in range(2 * depth)}
    w_b = {f"w_b_{i:03d}": torch.randn(width, rank, generator=g) * 0.3 for i in range(2 * depth)}
    return {**w_a, **w_b}


def lora_on_qkv(lora, width, swap=False):
    """GECO's LoRA module: the fused qkv output plus B_q A_q y on the query third and B_v A_v y on
    the value third; block i's query is the pair 2i, its value 2i + 1 (``swap`` exchanges them)."""

    def extra(i, y):
        q, v = (2 * i + 1, 2 * i) if swap else (2 * i, 2 * i + 1)
        new_q = (y @ lora[f"w_a_{q:03d}"].T) @ lora[f"w_b_{q:03d}"].T
        new_v = (y @ lora[f"w_a_{v:03d}"].T) @ lora[f"w_b_{v:03d}"].T
        return torch.cat([new_q, torch.zeros_like(new_q), new_v], dim=-1)

    return extra


def tiny_geco(tmp_path, lora, size=56):
    backbone_state = saved_official_state(tmp_path / "dinov2_tiny.pth", 32, 2, registers=False, seed=9)
    backbone = tiny_backbone(registers=False)
    load_official_checkpoint(backbone, tmp_path / "dinov2_tiny.pth", registers=False)
    torch.save(lora, tmp_path / "last_lora_weights.pth")
    config = GecoConfig(input_size=size, weights=str(tmp_path / "last_lora_weights.pth"))
    return backbone_state, GecoExtractor(config, backbone=backbone)


class TestTinyAgainstReference:
    @pytest.mark.parametrize("size", [56, 98])
    def test_features_equal_the_reference(self, tmp_path, one_thread, size):
        lora = authors_file(32, 2)
        backbone_state, extractor = tiny_geco(tmp_path, lora, size)
        canvas = torch.rand(2, 3, size, size)
        with torch.no_grad():
            ours = extractor(canvas)
        reference = official_patch_tokens(
            backbone_state, canvas, heads=2, registers=False, qkv_extra=lora_on_qkv(lora, 32)
        )
        assert (ours - reference).abs().max() < 1e-5

    def test_the_query_value_order_matters_and_is_the_authors(self, tmp_path, one_thread):
        """A file whose q and v were swapped cannot be told apart by its keys; the features can."""
        lora = authors_file(32, 2)
        backbone_state, extractor = tiny_geco(tmp_path, lora)
        canvas = torch.rand(1, 3, 56, 56)
        with torch.no_grad():
            ours = extractor(canvas)
        swapped = official_patch_tokens(
            backbone_state, canvas, heads=2, registers=False, qkv_extra=lora_on_qkv(lora, 32, swap=True)
        )
        assert (ours - swapped).abs().max() > 1e-2

    @pytest.mark.parametrize("change,key", [("drop", "w_b_002"), ("add", "w_a_004"), ("drop", "w_a_000")])
    def test_missing_or_extra_key_is_refused_by_name(self, tmp_path, change, key):
        lora = authors_file(32, 2)
        if change == "drop":
            del lora[key]
        else:
            lora[key] = torch.zeros(3, 32)
        with pytest.raises(CheckpointError, match=re.escape(key)):
            tiny_geco(tmp_path, lora)

    def test_pil_bilinear_square_input(self, tmp_path, one_thread):
        _, extractor = tiny_geco(tmp_path, authors_file(32, 2))
        canvas, (geometry,) = extractor.preprocess([torch.rand(3, 40, 70)])
        assert canvas.shape == (1, 3, 56, 56) and geometry.offset == (0.0, 0.0)
        assert torch.equal(canvas, (canvas * 255).round() / 255)  # 8-bit, as Pillow resizes


class TestAuthorsFile:
    def test_the_real_file_folds_with_every_key(self, tmp_path, one_thread):
        """GECO's released LoRA (48 tensors, rank 10) on a random full-size ViT-B/14."""
        path = data_path("weights", "geco_lora.pth")
        lora = read_state_dict(path)
        assert len(lora) == 48 and lora["w_a_000"].shape == (10, 768)
        backbone_state = saved_official_state(tmp_path / "dinov2_vitb14_pretrain.pth", 768, 12, registers=False, seed=2)
        extractor = build_extractor(
            "geco",
            weights=str(path),
            backbone=str(tmp_path / "dinov2_vitb14_pretrain.pth"),
            input_size=56,
            device="cpu",
        )
        canvas = torch.rand(1, 3, 56, 56)
        with torch.no_grad():
            ours = extractor(canvas)
        reference = official_patch_tokens(
            backbone_state,
            canvas,
            heads=12,
            registers=False,
            qkv_extra=lora_on_qkv({k: v.detach() for k, v in lora.items()}, 768),
        )
        assert_full_size_close(ours, reference)

    def test_never_downloaded_unasked(self):
        with pytest.raises(WeightsUnavailableError) as error:
            build_extractor("geco")
        message = str(error.value)
        assert "only when asked" in message and "--download" in message and "none stated" in message
        with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):  # asked, but offline
            build_extractor("geco", download=True)


def test_full_size_shapes_on_meta():
    with torch.device("meta"):
        extractor = GecoExtractor(random_weights=True)
    assert extractor.grid_size() == (37, 37) and extractor.config.input_size == 518
