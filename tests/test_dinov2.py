import re

import pytest
import torch
from helpers import tiny_backbone
from official_dinov2 import official_patch_tokens, saved_official_state
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from semcorr import build_extractor
from semcorr.errors import CheckpointError, InputError, WeightsUnavailableError
from semcorr.features import DinoV2Config, DinoV2Extractor


def official_state_dict(model, registers=True, swiglu=False):
    """The torch-hub (official DINOv2) naming of a transformers model's weights, written independently of
    semcorr's converter: fused qkv, ls gamma, w12/w3 for SwiGLU."""
    hf = model.state_dict()
    out = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": hf["embeddings.position_embeddings"],
        "mask_token": hf["embeddings.mask_token"].clone(),
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    if registers:
        out["register_tokens"] = hf["embeddings.register_tokens"]
    for i in range(model.config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([hf[f"{p}attention.{n}_proj.{kind}"] for n in "qkv"])
            out[f"blocks.{i}.attn.proj.{kind}"] = hf[f"{p}attention.o_proj.{kind}"]
            for norm in ("norm1", "norm2"):
                out[f"blocks.{i}.{norm}.{kind}"] = hf[f"{p}{norm}.{kind}"]
            if swiglu:
                out[f"blocks.{i}.mlp.w12.{kind}"] = torch.cat(
                    [hf[f"{p}mlp.gate_proj.{kind}"], hf[f"{p}mlp.up_proj.{kind}"]]
                )
                out[f"blocks.{i}.mlp.w3.{kind}"] = hf[f"{p}mlp.down_proj.{kind}"]
            else:
                out[f"blocks.{i}.mlp.fc1.{kind}"] = hf[f"{p}mlp.fc1.{kind}"]
                out[f"blocks.{i}.mlp.fc2.{kind}"] = hf[f"{p}mlp.fc2.{kind}"]
        out[f"blocks.{i}.ls1.gamma"] = hf[f"{p}layer_scale1.lambda1"]
        out[f"blocks.{i}.ls2.gamma"] = hf[f"{p}layer_scale2.lambda1"]
    return {k: v.clone() for k, v in out.items()}


def randomize(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


class TestTinyExtractor:
    def test_shapes_grid_and_normalisation(self):
        extractor = DinoV2Extractor(DinoV2Config(input_size=98), backbone=tiny_backbone(), random_weights=True)
        fmap = extractor.extract([torch.rand(3, 50, 80), torch.rand(3, 120, 60)])
        assert fmap.features.shape == (2, 32, 7, 7)
        assert torch.allclose(fmap.features.norm(dim=1), torch.ones(2, 7, 7), atol=1e-5)
        assert fmap.random_weights and extractor.grid_size() == (7, 7)
        assert fmap.geometries[0].original_size == (50, 80)

    def test_raw_output_is_kept_as_per_cell_norms(self):
        extractor = DinoV2Extractor(DinoV2Config(input_size=56), backbone=tiny_backbone(), random_weights=True)
        image = torch.rand(3, 56, 56)
        fmap = extractor.extract(image)
        with torch.no_grad():
            raw = extractor(extractor.preprocess([image])[0])
        assert fmap.norms.shape == (1, 1, 4, 4) and torch.allclose(fmap.raw_features(), raw, atol=1e-5)
        assert fmap[0].norms.shape == (1, 1, 4, 4) and fmap.upsample(8).norms is None
        with pytest.raises(ValueError, match="no raw norms"):
            fmap.upsample(8).raw_features()

    def test_patch_tokens_match_the_model_output(self):
        backbone = tiny_backbone()
        extractor = DinoV2Extractor(DinoV2Config(input_size=56), backbone=backbone)
        pixels = torch.rand(1, 3, 56, 56)
        mean, std = (
            torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
            torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
        )
        with torch.no_grad():
            tokens = backbone(pixel_values=(pixels - mean) / std).last_hidden_state  # (1, 1 + 4 + 16, 32)
            ours = extractor(pixels)
        assert torch.allclose(ours[0, :, 1, 2], tokens[0, 5 + 1 * 4 + 2], atol=1e-6)

    def test_layer_choice_truncates_blocks(self):
        backbone = tiny_backbone(layers=3)
        reference = tiny_backbone(layers=3)
        with torch.no_grad():
            pixels = torch.rand(1, 3, 28, 28)
            hidden = reference(pixel_values=pixels, output_hidden_states=True).hidden_states[1]
            expected = reference.layernorm(hidden)[:, 5:]
        extractor = DinoV2Extractor(DinoV2Config(input_size=28, layer=1), backbone=backbone)
        extractor.mean.zero_(), extractor.std.fill_(1.0)
        assert len(extractor.model.encoder.layer) == 1
        with torch.no_grad():
            ours = extractor(pixels)
        assert torch.allclose(ours.flatten(2).transpose(1, 2), expected, atol=1e-5)

    def test_runs_under_inference_mode_by_default(self):
        extractor = DinoV2Extractor(DinoV2Config(input_size=28), backbone=tiny_backbone())
        modes = []
        extractor.register_forward_hook(lambda *args: modes.append(torch.is_inference_mode_enabled()))
        extractor.extract(torch.rand(3, 30, 30))
        extractor.model.requires_grad_(True)
        features = extractor.extract(torch.rand(3, 30, 30), grad=True).features
        assert modes == [True, False] and features.requires_grad

    def test_bf16_autocast_close_to_fp32(self):
        backbone = tiny_backbone()
        image = torch.rand(3, 40, 40)
        fp32 = DinoV2Extractor(DinoV2Config(input_size=28), backbone=backbone).extract(image).features
        bf16 = DinoV2Extractor(DinoV2Config(input_size=28, precision="bf16"), backbone=backbone).extract(image).features
        assert bf16.dtype == torch.float32 and (fp32 * bf16).sum(dim=1).min() > 0.98

    @pytest.mark.parametrize("bad,message", [(dict(input_size=100), "multiple of 14"), (dict(layer=5), "blocks 1..2")])
    def test_bad_settings(self, bad, message):
        with pytest.raises(InputError, match=message):
            DinoV2Extractor(DinoV2Config(**bad), backbone=tiny_backbone())


class TestFullSize:
    def test_vit_b14_reg_at_434_gives_31x31x768(self):
        extractor = build_extractor("dinov2-b-reg", random_weights=True, device="cpu")
        assert sum(p.numel() for p in extractor.parameters()) == pytest.approx(86.6e6, rel=0.01)
        fmap = extractor.extract(torch.rand(3, 300, 451))
        assert fmap.features.shape == (1, 768, 31, 31) and fmap.random_weights
        assert fmap.model == "dinov2-b-reg"

    @pytest.mark.parametrize("size,width,depth", [("s", 384, 12), ("l", 1024, 24), ("g", 1536, 40)])
    def test_other_sizes_on_meta(self, size, width, depth):
        with torch.device("meta"):
            extractor = DinoV2Extractor(DinoV2Config(size=size), random_weights=True)
        assert extractor.model.config.hidden_size == width and len(extractor.model.encoder.layer) == depth
        assert extractor.grid_size() == (31, 31)


class TestOfficialCheckpoint:
    @pytest.mark.parametrize("registers,swiglu", [(True, False), (False, False), (True, True)])
    def test_converted_features_equal_the_source_model(self, tmp_path, registers, swiglu):
        source = randomize(tiny_backbone(registers=registers, swiglu=swiglu))
        path = tmp_path / "dinov2.pth"
        torch.save(official_state_dict(source, registers, swiglu), path)
        target = tiny_backbone(registers=registers, swiglu=swiglu, seed=7)
        from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

        load_official_checkpoint(target, path, registers=registers)
        pixels = torch.rand(1, 3, 42, 42)
        with torch.no_grad():
            assert torch.allclose(
                target(pixel_values=pixels).last_hidden_state, source(pixel_values=pixels).last_hidden_state, atol=1e-6
            )

    def test_full_size_pth_through_the_preset(self, tmp_path):
        with torch.device("meta"):
            shapes = Dinov2WithRegistersModel(DinoV2Extractor.__init__.__globals__["hf_config"](DinoV2Config()))
        state = {k: torch.zeros(v.shape) for k, v in official_state_dict(shapes).items()}
        path = tmp_path / "dinov2_vitb14_reg4_pretrain.pth"
        torch.save(state, path)
        extractor = build_extractor("dinov2-b-reg", weights=str(path), device="cpu")
        assert not extractor.random_weights
        assert torch.count_nonzero(extractor.model.encoder.layer[3].attention.q_proj.weight) == 0

    def test_unused_key_is_refused_by_name(self, tmp_path):
        state = official_state_dict(tiny_backbone())
        state["head.weight"] = torch.zeros(3)
        torch.save(state, tmp_path / "extra.pth")
        from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

        with pytest.raises(CheckpointError, match=re.escape("head.weight")):
            load_official_checkpoint(tiny_backbone(), tmp_path / "extra.pth", registers=True)

    def test_missing_key_and_register_mismatch(self, tmp_path):
        from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

        state = official_state_dict(tiny_backbone())
        del state["blocks.1.ls2.gamma"]
        torch.save(state, tmp_path / "missing.pth")
        with pytest.raises(CheckpointError, match="layer_scale2"):
            load_official_checkpoint(tiny_backbone(), tmp_path / "missing.pth", registers=True)
        with pytest.raises(CheckpointError, match="register tokens"):
            load_official_checkpoint(tiny_backbone(registers=False), tmp_path / "missing.pth", registers=False)

    def test_wrong_size_is_refused(self, tmp_path):
        from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

        torch.save(official_state_dict(tiny_backbone()), tmp_path / "tiny.pth")
        with torch.device("meta"):
            bigger = Dinov2WithRegistersModel(
                Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14)
            )
        with pytest.raises(CheckpointError, match="shapes"):
            load_official_checkpoint(bigger, tmp_path / "tiny.pth", registers=True)

    def test_not_a_state_dict(self, tmp_path):
        (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
        with pytest.raises(CheckpointError, match="junk.pth"):
            build_extractor("dinov2-b-reg", weights=str(tmp_path / "junk.pth"))


class TestWeightSources:
    def test_local_folder_round_trip(self, tmp_path, monkeypatch):
        backbone = randomize(tiny_backbone())
        backbone.save_pretrained(tmp_path / "tiny")
        import semcorr.features.backbones.dinov2 as dinov2

        monkeypatch.setattr(dinov2, "hf_config", lambda config: backbone.config)
        extractor = build_extractor("dinov2-b-reg", weights=str(tmp_path / "tiny"), input_size=28, device="cpu")
        pixels = torch.rand(1, 3, 28, 28)
        with torch.no_grad():
            assert torch.allclose(
                extractor.model(pixel_values=pixels).last_hidden_state,
                backbone(pixel_values=pixels).last_hidden_state,
                atol=1e-6,
            )

    def test_folder_of_another_size_is_refused(self, tmp_path, monkeypatch):
        tiny_backbone(layers=1).save_pretrained(tmp_path / "one-layer")
        import semcorr.features.backbones.dinov2 as dinov2

        monkeypatch.setattr(dinov2, "hf_config", lambda config: tiny_backbone(layers=2).config)
        with pytest.raises(CheckpointError, match="does not fit"):
            build_extractor("dinov2-b-reg", weights=str(tmp_path / "one-layer"), input_size=28)

    def test_offline_without_weights_is_a_clear_error(self):
        with pytest.raises(WeightsUnavailableError) as error:
            build_extractor("dinov2-b-reg")
        message = str(error.value)
        assert "facebook/dinov2-with-registers-base" in message and "--weights" in message
        assert "--random-weights" in message and "\n" not in message

    def test_missing_local_path(self):
        with pytest.raises(InputError, match="does not exist"):
            build_extractor("dinov2-s", weights="./nowhere/dinov2")


class TestOfficialInterpolation:
    """Every DINOv2 preset equals the official hub code at any input size (plain-torch reference)."""

    @staticmethod
    def extractor_from_official(tmp_path, registers, size):
        state = saved_official_state(tmp_path / "official.pth", 32, 2, registers=registers, seed=3)
        from semcorr.weights.dinov2_checkpoint import load_official_checkpoint

        backbone = tiny_backbone(registers=registers)
        load_official_checkpoint(backbone, tmp_path / "official.pth", registers=registers)
        return state, DinoV2Extractor(DinoV2Config(input_size=size, registers=registers), backbone=backbone)

    @pytest.mark.parametrize("registers", [False, True])
    @pytest.mark.parametrize("size", [224, 434, 518, 840])
    def test_equal_to_the_official_forward(self, tmp_path, one_thread, registers, size):
        state, extractor = self.extractor_from_official(tmp_path, registers, size)
        pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            ours = extractor(pixels)
        reference = official_patch_tokens(state, pixels, heads=2, registers=registers)
        assert (ours - reference).abs().max() < 1e-5

    def test_rectangular_input(self, tmp_path, one_thread):
        state, extractor = self.extractor_from_official(tmp_path, False, 224)
        pixels = torch.rand(1, 3, 154, 98)
        with torch.no_grad():
            ours = extractor(pixels)
        assert ours.shape == (1, 32, 11, 7)
        assert (ours - official_patch_tokens(state, pixels, heads=2, registers=False)).abs().max() < 1e-5

    def test_transformers_alone_differs_without_registers(self, tmp_path, one_thread):
        """The reason for the fix: transformers resizes the no-register table by size, not by offset scale."""
        state, extractor = self.extractor_from_official(tmp_path, False, 434)
        del extractor.model.embeddings.interpolate_pos_encoding  # back to transformers' own method
        pixels = torch.rand(1, 3, 434, 434)
        with torch.no_grad():
            plain = extractor(pixels)
        assert (plain - official_patch_tokens(state, pixels, heads=2, registers=False)).abs().max() > 1e-4
