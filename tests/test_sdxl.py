"""SDXL-Turbo teacher: real TAESDXL weights, the UNet trunk against the full UNet, conditioning, grids."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import data_path
from diffusers import DDPMScheduler
from helpers import tiny_components, tiny_unet
from safetensors.torch import load_file, save_file

from semcorr import build_extractor
from semcorr.cli import main
from semcorr.errors import CheckpointError, InputError, WeightsUnavailableError
from semcorr.features import SdxlTurboConfig, SdxlTurboExtractor
from semcorr.features.backbones.sdxl.parts import build_vae, random_components
from semcorr.features.backbones.sdxl.taesd import load_official, load_taesdxl
from semcorr.features.backbones.sdxl.unet import UnetTrunk
from semcorr.images import load_image

pytestmark = pytest.mark.usefixtures("one_thread")


def psnr(a, b):
    return float(10 * torch.log10(1.0 / F.mse_loss(a, b)))


def roundtrip(vae, image):
    """(1, 3, H, W) in [0, 1] -> encode -> decode -> [0, 1]."""
    with torch.no_grad():
        latents = vae.encode(image * 2 - 1).latents
        return (vae.decode(latents).sample.clamp(-1, 1) + 1) / 2


class TestTaesdxl:
    def test_real_weights_reconstruct_a_real_image(self):
        encoder = data_path("weights", "taesdxl_encoder.safetensors")
        image_file = sorted(data_path("pf-willow").glob("*/*.png"))[0]
        image = F.interpolate(load_image(image_file)[None], size=(256, 384), mode="bilinear", antialias=True).clamp(
            0, 1
        )
        trained = load_taesdxl(str(encoder))  # finds taesdxl_decoder.safetensors beside it
        assert psnr(roundtrip(trained, image), image) >= 18.0
        torch.manual_seed(0)
        assert psnr(roundtrip(build_vae("tiny").eval(), image), image) < 12.0

    def test_every_official_key_is_accounted_for(self, tmp_path):
        encoder = load_file(str(data_path("weights", "taesdxl_encoder.safetensors")))
        decoder = load_file(str(data_path("weights", "taesdxl_decoder.safetensors")))
        vae = build_vae("tiny")
        load_official(
            vae,
            data_path("weights", "taesdxl_encoder.safetensors"),
            data_path("weights", "taesdxl_decoder.safetensors"),
        )
        state = vae.state_dict()
        assert len(encoder) + len(decoder) == len(state)
        assert torch.equal(state["decoder.layers.0.weight"], decoder["1.weight"].float())
        extra = dict(encoder, **{"99.weight": torch.zeros(1)})
        save_file(extra, tmp_path / "extra.safetensors")
        with pytest.raises(CheckpointError, match="unexpected.*99.weight"):
            load_official(build_vae("tiny"), tmp_path / "extra.safetensors")
        save_file({k: v for k, v in encoder.items() if k != "0.weight"}, tmp_path / "missing.safetensors")
        with pytest.raises(CheckpointError, match="missing.*encoder.layers.0.weight"):
            load_official(build_vae("tiny"), tmp_path / "missing.safetensors")


def unet_inputs(batch=2, side=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, side, side, generator=generator),
        timestep=torch.tensor([51] * batch),
        encoder_hidden_states=torch.randn(batch, 16, 40, generator=generator),
        text_embeds=torch.randn(batch, 20, generator=generator),
        time_ids=torch.tensor([[64.0, 64, 0, 0, 64, 64]] * batch),
    )


def hooked_reference(unet, inputs):
    """The output of up_blocks[0].attentions[0] in the full UNet's own forward (written independently)."""
    seen = []
    handle = unet.up_blocks[0].attentions[0].register_forward_hook(lambda module, args, out: seen.append(out[0]))
    with torch.no_grad():
        unet(
            inputs["sample"],
            inputs["timestep"],
            inputs["encoder_hidden_states"],
            added_cond_kwargs={"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]},
        )
    handle.remove()
    assert len(seen) == 1
    return seen[0]


class TestUnetTrunk:
    def test_matches_the_full_unet_at_up_blocks_0_stage_1(self):
        unet = tiny_unet()
        trunk = UnetTrunk(copy.deepcopy(unet)).eval()
        inputs = unet_inputs()
        with torch.no_grad():
            ours = trunk(
                inputs["sample"],
                inputs["timestep"],
                inputs["encoder_hidden_states"],
                inputs["text_embeds"],
                inputs["time_ids"],
            )
        reference = hooked_reference(unet, inputs)
        assert ours.shape == reference.shape == (2, 32, 8, 8)
        assert torch.allclose(ours, reference, atol=1e-5)
        names = {name for name, _ in trunk.named_parameters()}
        assert not any(
            n.startswith(("up_blocks.1", "up_blocks.0.resnets.1", "up_blocks.0.upsamplers", "conv_out")) for n in names
        )
        assert sum(p.numel() for p in trunk.parameters()) < sum(p.numel() for p in unet.parameters())

    def test_added_conditioning_reaches_the_unet(self):
        trunk = UnetTrunk(tiny_unet()).eval()
        inputs = unet_inputs()
        keys = ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids")
        with torch.no_grad():
            base = trunk(*(inputs[k] for k in keys))
            other_ids = dict(inputs, time_ids=torch.tensor([[512.0, 512, 0, 0, 512, 512]] * 2))
            other_pooled = dict(inputs, text_embeds=inputs["text_embeds"] + 1.0)
            assert (trunk(*(other_ids[k] for k in keys)) - base).abs().max() > 1e-3
            assert (trunk(*(other_pooled[k] for k in keys)) - base).abs().max() > 1e-3

    def test_refuses_a_unet_without_sdxl_conditioning(self):
        from diffusers import UNet2DConditionModel

        plain = UNet2DConditionModel(
            block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=8,
            norm_num_groups=8,
            attention_head_dim=2,
            layers_per_block=1,
        )
        with pytest.raises(CheckpointError, match="addition_embed_type"):
            UnetTrunk(plain)


class TestSdxlExtractor:
    def test_features_are_the_timestep_mean_of_the_real_unet(self, tmp_path):
        """Everything recomputed independently: VAE mean latents, seeded noise, DDPM noising, both text
        encoders (penultimate states, pooled projection), time ids, and a hook on the full UNet."""
        parts = tiny_components(tmp_path)
        reference = copy.deepcopy(parts)
        config = SdxlTurboConfig(input_size=32, seed=7)
        extractor = SdxlTurboExtractor(config, components=parts)
        pixels = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            ours = extractor(pixels, categories=["cat", None])
            latents = reference.vae.encode(pixels * 2 - 1).latent_dist.mode() * reference.vae.config.scaling_factor
            hidden, pooled = [], []
            for prompt in ("a photo of a cat", ""):
                states = []
                for tokenizer, encoder in (
                    (reference.tokenizer, reference.text_encoder),
                    (reference.tokenizer_2, reference.text_encoder_2),
                ):
                    ids = tokenizer(prompt, padding="max_length", max_length=16, return_tensors="pt").input_ids
                    out = encoder(ids, output_hidden_states=True)
                    states.append(out.hidden_states[-2])
                hidden.append(torch.cat(states, -1))
                pooled.append(out.text_embeds)
            alphas = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
            generator = torch.Generator().manual_seed(7)
            outputs = []
            for t in (51, 101, 151, 201):
                noise = torch.randn((1, 4, 16, 16), generator=generator)
                noisy = alphas[t].sqrt() * latents + (1 - alphas[t]).sqrt() * noise
                inputs = dict(
                    sample=noisy,
                    timestep=torch.tensor([t, t]),
                    encoder_hidden_states=torch.cat(hidden),
                    text_embeds=torch.cat(pooled),
                    time_ids=torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2),
                )
                outputs.append(hooked_reference(reference.unet, inputs))
        expected = torch.stack(outputs).mean(0)
        assert ours.shape == expected.shape == (2, 32, 8, 8)
        assert torch.allclose(ours, expected, atol=1e-4)
        assert not torch.allclose(ours, outputs[0], atol=1e-3)  # the mean, not one timestep

    def test_extract_prompts_time_ids_and_seeds(self, tmp_path):
        parts = tiny_components(tmp_path)
        image = torch.rand(3, 20, 30)

        def features(parts, **settings):
            return SdxlTurboExtractor(SdxlTurboConfig(input_size=32, **settings), components=parts).extract(image)

        fmap = SdxlTurboExtractor(SdxlTurboConfig(input_size=32), components=parts).extract(image, categories=["dog"])
        assert fmap.features.shape == (1, 32, 8, 8) and fmap.model == "sdxl-turbo"
        assert torch.allclose(fmap.features.norm(dim=1), torch.ones(1, 8, 8), atol=1e-5)
        base = features(copy.deepcopy(parts))
        assert not torch.allclose(base.features, fmap.features, atol=1e-4)  # the prompt matters
        assert torch.equal(base.features, features(copy.deepcopy(parts)).features)  # seeded
        assert not torch.allclose(base.features, features(copy.deepcopy(parts), seed=1).features, atol=1e-4)
        changed = features(copy.deepcopy(parts), time_ids=(512, 512, 0, 0, 512, 512))
        assert not torch.allclose(base.features, changed.features, atol=1e-4)
        extractor = SdxlTurboExtractor(SdxlTurboConfig(input_size=32), components=copy.deepcopy(parts))
        alone = extractor.extract(image).features
        batched = extractor.extract([torch.rand(3, 25, 25), image]).features[1:]
        assert torch.allclose(alone, batched, atol=1e-5)  # noise does not depend on the batch
        with pytest.raises(InputError, match="2 categories for a batch of 1"):
            extractor.extract(image, categories=["a", "b"])

    @pytest.mark.parametrize("precision", ["bf16", "fp16"])
    def test_reduced_precision(self, tmp_path, precision):
        extractor = SdxlTurboExtractor(
            SdxlTurboConfig(input_size=32, precision=precision), components=tiny_components(tmp_path)
        )
        reference = SdxlTurboExtractor(SdxlTurboConfig(input_size=32), components=tiny_components(tmp_path))
        image = torch.rand(3, 32, 32)
        assert next(extractor.trunk.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        # the full VAE says force_upcast: in fp16 it stays fp32
        assert next(extractor.vae.parameters()).dtype == (torch.float32 if precision == "fp16" else torch.bfloat16)
        cosine = (extractor.extract(image).features * reference.extract(image).features).sum(1)
        assert cosine.mean() > 0.95

    @pytest.mark.parametrize("vae", ["full", "tiny"])
    def test_grid_size_follows_the_real_network(self, tmp_path, vae):
        extractor = SdxlTurboExtractor(SdxlTurboConfig(input_size=32), components=tiny_components(tmp_path, vae))
        for side in (32, 37, 46, 51):
            with torch.no_grad():
                out = extractor(torch.rand(1, 3, side, side))
            assert out.shape[-2:] == extractor.grid_size(side), (vae, side)

    def test_loads_a_diffusers_folder_strictly(self, tmp_path):
        parts = tiny_components(tmp_path / "saved")
        folder = tmp_path / "saved"
        parts.unet.save_pretrained(folder / "unet", variant="fp16")  # fp16 variant file names
        parts.vae.save_pretrained(folder / "vae")
        parts.text_encoder.save_pretrained(folder / "text_encoder")
        parts.text_encoder_2.save_pretrained(folder / "text_encoder_2")
        (folder / "scheduler").mkdir()
        (folder / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(
                {
                    "beta_start": 0.00085,
                    "beta_end": 0.012,
                    "beta_schedule": "scaled_linear",
                    "num_train_timesteps": 1000,
                }
            )
        )
        in_memory = SdxlTurboExtractor(SdxlTurboConfig(input_size=32), components=parts)
        loaded = build_extractor("sdxl-turbo", weights=str(folder), input_size=32, device="cpu")
        image = torch.rand(3, 30, 40)
        assert torch.allclose(loaded.extract(image).features, in_memory.extract(image).features, atol=1e-5)
        weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
        state = load_file(str(weights))
        save_file({k: v for k, v in state.items() if not k.startswith("decoder.conv_out")}, str(weights))
        with pytest.raises(CheckpointError, match="vae"):
            build_extractor("sdxl-turbo", weights=str(folder), input_size=32, device="cpu")


@pytest.fixture(scope="module")
def full_size_on_meta():
    """The released SDXL-Turbo architectures, built on the meta device (no memory, a few seconds)."""
    with torch.device("meta"):
        # One timestep: the grid does not depend on how many are averaged.
        return {
            vae: SdxlTurboExtractor(
                SdxlTurboConfig(vae=vae, timesteps=(51,)), random_weights=True, components=random_components(vae)
            )
            for vae in ("full", "tiny")
        }


class TestFullSize:
    @pytest.mark.parametrize("vae", ["full", "tiny"])
    def test_980_gives_the_students_31x31_grid(self, full_size_on_meta, vae):
        extractor = full_size_on_meta[vae]
        with torch.inference_mode():
            out = extractor(torch.empty(1, 3, 980, 980, device="meta"))
        student_grid = (434 // 14, 434 // 14)
        assert tuple(out.shape) == (1, 1280, 31, 31)
        assert extractor.grid_size() == tuple(out.shape[-2:]) == student_grid
        assert extractor.sizes() == {"input": 980, "latent": 122 if vae == "full" else 123, "grid": 31}

    def test_the_trunk_drops_the_up_path(self, full_size_on_meta):
        trunk = full_size_on_meta["full"].trunk
        kept = sum(p.numel() for p in trunk.parameters())
        assert 1.6e9 < kept < 1.7e9  # of the UNet's 2.57B


class TestWeightsUnavailable:
    def test_offline_without_weights_is_one_clear_line(self, capsys, tmp_path):
        with pytest.raises(WeightsUnavailableError, match="stabilityai/sdxl-turbo.*--weights PATH"):
            build_extractor("sdxl-turbo", device="cpu")
        with pytest.raises(WeightsUnavailableError, match="madebyollin/taesdxl.*--tiny-vae-weights"):
            build_extractor("sdxl-turbo", vae="tiny", device="cpu")
        with pytest.raises(InputError, match="does not exist"):
            build_extractor("sdxl-turbo", weights="./no/such/folder", device="cpu")
        folder = data_path("pf-willow")
        assert main(["cache-teacher", str(folder), "--out", str(tmp_path / "c"), "--model", "sdxl-turbo"]) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("semcorr: error: sdxl-turbo: weights")
