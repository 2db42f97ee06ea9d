"""SDXL-Turbo UNet features (DistillDIFT's first teacher), through diffusers.

The image, in [-1, 1] on a 980x980 canvas, is encoded by the VAE (the full SDXL VAE, or TAESDXL
for speed), noised at timesteps 51, 101, 151 and 201 (fresh noise each), and run through the UNet
once per timestep, up to the first stage of ``up_blocks[0]`` (see :mod:`.sdxl_unet`); the four
1280-channel maps are averaged. The UNet is conditioned on the prompt ``a photo of a {category}``
(or a neutral prompt) through both text encoders, with SDXL's added conditioning (pooled text
embedding and time ids) passed as the pipeline does. Grid: 980 -> latent 122 (TAESDXL: 123) ->
61 -> 31, the student's 31x31 at 434.

Noise is drawn from a generator seeded with ``seed`` at every call, the same for every image of a
batch, so an image's features do not depend on the batch it is in (``seed=None``: fresh noise).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from ....errors import InputError
from ...base import Extractor
from ...config import SdxlTurboConfig
from .parts import SDXL_TURBO_ID, SdxlComponents, load_components, random_components
from .taesd import load_taesdxl
from .unet import UnetTrunk, describe_grid, vae_downsamplings

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKL, AutoencoderTiny

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_Module = TypeVar("_Module", bound=torch.nn.Module)


def build_components(config: SdxlTurboConfig, *, random_weights: bool, name: str) -> SdxlComponents:
    """Load (or build untrained) the UNet, VAE, text encoders and tokenizers for ``config``."""
    dtype = _DTYPES[config.precision]
    if random_weights:
        components = random_components(config.vae)
    else:
        tiny = load_taesdxl(config.tiny_vae_weights, model=name) if config.vae == "tiny" else None
        vae_dtype = torch.float32 if config.precision == "fp16" else dtype
        components = load_components(
            config.weights or SDXL_TURBO_ID,
            vae=config.vae,
            model_name=name,
            dtype=dtype,
            vae_dtype=vae_dtype,
            tiny_vae=tiny,
        )
    return components


def _frozen(module: _Module, dtype: torch.dtype) -> _Module:
    """``module`` in eval mode without gradients, cast to ``dtype`` if it is not already."""
    if next(module.parameters()).dtype != dtype:  # nn.Module.to: diffusers' own .to warns on every cast
        module = torch.nn.Module.to(module, dtype)
    return module.eval().requires_grad_(False)


class SdxlTurboExtractor(Extractor):
    """SDXL-Turbo features: (B, 1280, 31, 31) at 980, averaged over timesteps.

    ``extract(images, categories=["cat", None, ...])`` prompts each image with its category.
    """

    stride = 32  # approximate: the grid follows the VAE and UNet rule, see grid_size()
    prompted = True  # extract(images, categories=[...]): "a photo of a {category}" per image
    config: SdxlTurboConfig

    def __init__(
        self,
        config: SdxlTurboConfig = SdxlTurboConfig(),
        *,
        random_weights: bool = False,
        name: str | None = None,
        components: SdxlComponents | None = None,
    ) -> None:
        """Build from ``config``; ``components`` (e.g. tiny ones in tests) replace the released
        architecture and its weights."""
        super().__init__()
        self.name = name or "sdxl-turbo"
        self.config = config
        self.random_weights = random_weights
        parts = components or build_components(config, random_weights=random_weights, name=self.name)
        steps = len(parts.alphas_cumprod)
        if not all(0 <= t < steps for t in config.timesteps):
            raise InputError(f"{self.name}: timesteps must lie in [0, {steps}), got {config.timesteps}")
        dtype = _DTYPES[config.precision]
        # The SDXL VAE overflows in fp16 (its config says force_upcast): it stays fp32 then.
        vae_dtype = torch.float32 if config.precision == "fp16" and parts.vae.config["force_upcast"] else dtype
        self.trunk = _frozen(UnetTrunk(parts.unet), dtype)
        self.vae = _frozen(parts.vae, vae_dtype)
        self.text_encoder = _frozen(parts.text_encoder, dtype)
        self.text_encoder_2 = _frozen(parts.text_encoder_2, dtype)
        self.tokenizers = (parts.tokenizer, parts.tokenizer_2)
        self.alphas_cumprod: tuple[float, ...] = tuple(float(a) for a in parts.alphas_cumprod)
        self.vae_kind, self.vae_stages = vae_downsamplings(self.vae)
        self._prompt_cache: dict[str, tuple[Tensor, Tensor]] = {}

    # --- geometry ------------------------------------------------------------------------------

    def grid_size(self, input_size: int | None = None) -> tuple[int, int]:
        """(h, w) of the feature grid for a square canvas: 980 -> (31, 31)."""
        side = self.sizes(input_size)["grid"]
        return (side, side)

    def sizes(self, input_size: int | None = None) -> dict[str, int]:
        """Input, latent and grid sides, e.g. ``{"input": 980, "latent": 122, "grid": 31}``."""
        return describe_grid(
            input_size or self.config.input_size,
            self.vae_kind,
            self.vae_stages,
            self.trunk.downsamplings,
            self.trunk.downsample_padding,
        )

    # --- conditioning --------------------------------------------------------------------------

    def prompt_for(self, category: str | None) -> str:
        return self.config.prompt.format(category=category) if category else self.config.neutral_prompt

    def text_embeddings(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(B, L, 2048) penultimate hidden states of both encoders (concatenated) and (B, 1280)
        pooled embeddings; computed once per distinct prompt and kept."""
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._prompt_cache:
                with torch.inference_mode(False), torch.no_grad():  # cached: must outlive inference mode
                    self._prompt_cache[prompt] = self._encode_prompt(prompt)
        device = self.device
        hidden = torch.cat([self._prompt_cache[p][0] for p in prompts]).to(device)
        pooled = torch.cat([self._prompt_cache[p][1] for p in prompts]).to(device)
        return hidden, pooled

    def _encode_prompt(self, prompt: str) -> tuple[Tensor, Tensor]:
        hidden = []
        for tokenizer, encoder in zip(self.tokenizers, (self.text_encoder, self.text_encoder_2)):
            length = min(tokenizer.model_max_length, encoder.config.max_position_embeddings)
            ids = tokenizer(
                [prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            output = encoder(ids, output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
        return torch.cat(hidden, dim=-1).detach(), output.text_embeds.detach()

    def time_ids(self, batch: int, side: int) -> Tensor:
        """(B, 6) SDXL size conditioning for a square canvas of ``side`` pixels."""
        values = self.config.time_ids or (side, side, 0, 0, side, side)
        return torch.tensor([values], dtype=torch.float32, device=self.device).expand(batch, 6)

    # --- forward -------------------------------------------------------------------------------

    def encode(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 4, h, w) scaled latents (the VAE's mean for the full VAE)."""
        vae: AutoencoderKL | AutoencoderTiny = self.vae
        dtype = next(vae.parameters()).dtype
        upcast = dtype == torch.float32 and self.config.precision == "fp16"
        with torch.autocast(pixels.device.type, enabled=False) if upcast else contextlib.nullcontext():
            images = (pixels * 2 - 1).to(dtype)
            encoded = vae.encode(images)
            latents = encoded.latents if self.vae_kind == "tiny" else encoded.latent_dist.mode()
        return latents * vae.config["scaling_factor"]

    def noise(self, shape: Sequence[int]) -> Iterator[Tensor]:
        """One (1, *shape) standard normal draw per timestep, from a generator seeded with ``seed``
        (on CPU, so the same on every device)."""
        generator = torch.Generator().manual_seed(self.config.seed) if self.config.seed is not None else None
        for _ in self.config.timesteps:
            yield torch.randn((1, *shape), generator=generator)

    def forward(self, pixels: Tensor, categories: Sequence[str | None] | None = None) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 1280, h, w) features averaged over timesteps (not normalised).

        Args:
            categories: one category (or ``None``) per image for the prompt; default: those given to
                :meth:`extract`, else the neutral prompt.
        """
        batch, side = pixels.shape[0], pixels.shape[-1]
        categories = categories if categories is not None else self._categories
        if categories is not None and len(categories) != batch:
            raise InputError(f"{self.name}: {len(categories)} categories for a batch of {batch} images")
        latents = self.encode(pixels).float()
        hidden, pooled = self.text_embeddings([self.prompt_for(c) for c in (categories or [None] * batch)])
        time_ids = self.time_ids(batch, side)
        dtype = next(self.trunk.parameters()).dtype
        total: Tensor | None = None
        for timestep, noise in zip(self.config.timesteps, self.noise(latents.shape[1:])):
            alpha = self.alphas_cumprod[timestep]
            noisy = math.sqrt(alpha) * latents + math.sqrt(1.0 - alpha) * noise.to(latents.device)
            steps = torch.full((batch,), timestep, dtype=torch.long, device=latents.device)
            features = self.trunk(noisy.to(dtype), steps, hidden.to(dtype), pooled.to(dtype), time_ids).float()
            total = features if total is None else total + features
        assert total is not None  # SdxlTurboConfig refuses an empty list of timesteps
        return total / len(self.config.timesteps)
