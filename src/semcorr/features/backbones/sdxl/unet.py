"""The part of SDXL's UNet that the teacher runs, and the grid it yields.

DistillDIFT's SDXL features are the output of the first stage (resnet 0, then attention 0) of
``up_blocks[0]``. :class:`UnetTrunk` keeps the modules up to that stage (time and added
embeddings, ``conv_in``, the down blocks, the mid block, that one resnet and attention) and drops
the rest: the other two stages of ``up_blocks[0]`` and its upsampler, ``up_blocks[1:]`` and the
output head. For the released SDXL UNet it keeps 1.64B of its 2.57B parameters, and skips most
of the up path's compute (``semcorr bench-sdxl --flops-only`` counts it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ....errors import CheckpointError

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel


def _check_sdxl_like(unet: UNet2DConditionModel) -> None:
    """Refuse UNets whose conditioning or first up block the trunk does not reproduce."""
    config = unet.config
    problems = []
    if config["addition_embed_type"] != "text_time":
        problems.append(f"addition_embed_type={config['addition_embed_type']!r} (SDXL: 'text_time')")
    if unet.class_embedding is not None or unet.encoder_hid_proj is not None or config["time_cond_proj_dim"]:
        problems.append("class / encoder-hidden / timestep-cond embeddings, which SDXL has not")
    first_up = unet.up_blocks[0]
    if not getattr(first_up, "has_cross_attention", False):
        problems.append(f"up_blocks[0] is {type(first_up).__name__}, not a cross-attention up block")
    if problems:
        raise CheckpointError(f"not an SDXL-like UNet: {'; '.join(problems)}")


class UnetTrunk(nn.Module):
    """SDXL's UNet up to and including ``up_blocks[0]``'s first resnet and attention.

    Built from a ``UNet2DConditionModel`` whose modules it takes over (the UNet itself is not
    kept). Parameter names stay those of the UNet (``down_blocks.*``, ``mid_block.*``,
    ``up_blocks.0.resnets.0.*``, ...).
    """

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        _check_sdxl_like(unet)
        self.center_input_sample = bool(unet.config["center_input_sample"])
        self.time_proj, self.time_embedding = unet.time_proj, unet.time_embedding
        self.add_time_proj, self.add_embedding = unet.add_time_proj, unet.add_embedding
        self.time_embed_act = unet.time_embed_act
        self.conv_in, self.down_blocks, self.mid_block = unet.conv_in, unet.down_blocks, unet.mid_block
        source: Any = unet.up_blocks[0]  # a CrossAttnUpBlock2D (checked above); nn.Module types its attributes loosely
        first_up = nn.Module()
        first_up.resnets = nn.ModuleList([source.resnets[0]])
        first_up.attentions = nn.ModuleList([source.attentions[0]])
        self.up_blocks = nn.ModuleList([first_up])
        self.out_channels: int = source.resnets[0].out_channels
        self.downsamplings: int = len(unet.config["down_block_types"]) - 1
        self.downsample_padding: int = unet.config["downsample_padding"]

    def embeddings(self, timesteps: Tensor, text_embeds: Tensor, time_ids: Tensor, dtype: torch.dtype) -> Tensor:
        """(B, D) time embedding plus SDXL's added embedding of the pooled text and the time ids.

        Args:
            timesteps: (B,) diffusion timesteps.
            text_embeds: (B, P) pooled (projected) embedding of the second text encoder.
            time_ids: (B, 6) original size (h, w), crop top-left (y, x), target size (h, w).
        """
        t_emb = self.time_proj(timesteps).to(dtype)  # sinusoidal projections are float32
        emb = self.time_embedding(t_emb)
        time_embeds = self.add_time_proj(time_ids.flatten()).reshape(time_ids.shape[0], -1)
        emb = emb + self.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(emb.dtype))
        return self.time_embed_act(emb) if self.time_embed_act is not None else emb

    def forward(
        self, sample: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor, text_embeds: Tensor, time_ids: Tensor
    ) -> Tensor:
        """(B, 4, h, w) noisy latents -> (B, 1280, h', w') output of up_blocks[0]'s first stage.

        Args:
            sample: (B, 4, h, w) noisy latents (the UNet's input, already scaled).
            timesteps: (B,) timesteps.
            encoder_hidden_states: (B, L, 2048) penultimate hidden states of both text encoders.
            text_embeds: (B, 1280) pooled text embedding; time_ids: (B, 6).
        """
        if self.center_input_sample:
            sample = 2 * sample - 1.0
        emb = self.embeddings(timesteps, text_embeds, time_ids, sample.dtype)
        sample = self.conv_in(sample)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, residuals = block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                sample, residuals = block(hidden_states=sample, temb=emb)
        sample = self.mid_block(sample, emb, encoder_hidden_states=encoder_hidden_states)
        # up_blocks[0], first stage: concatenate the last skip connection, resnet, attention.
        first_up = self.up_blocks[0]
        sample = first_up.get_submodule("resnets.0")(torch.cat([sample, residuals[-1]], dim=1), emb)
        return first_up.get_submodule("attentions.0")(
            sample, encoder_hidden_states=encoder_hidden_states, return_dict=False
        )[0]


def vae_downsamplings(vae: AutoencoderKL | AutoencoderTiny) -> tuple[str, int]:
    """(kind, number of stride-2 stages) of a VAE's encoder: ``("kl", 3)`` or ``("tiny", 3)`` for SDXL."""
    if type(vae).__name__ == "AutoencoderTiny":
        return "tiny", len(vae.config["num_encoder_blocks"]) - 1
    return "kl", len(vae.config["block_out_channels"]) - 1


def latent_side(side: int, vae_kind: str, stages: int) -> int:
    """Latent side for an input side: AutoencoderKL pads (0, 1) then convolves 3x3 stride 2 without
    padding; TAESD convolves 3x3 stride 2 with padding 1. 980 -> 122 (KL) or 123 (tiny)."""
    for _ in range(stages):
        side = (side - 2) // 2 + 1 if vae_kind == "kl" else (side - 1) // 2 + 1
    return side


def trunk_side(latent: int, downsamplings: int, padding: int = 1) -> int:
    """Side of the trunk's output for a latent side: each down block but the last halves it with a
    3x3 stride-2 convolution (padding 1). 122 -> 61 -> 31."""
    for _ in range(downsamplings):
        latent = (latent + 2 * padding - 3) // 2 + 1
    return latent


def describe_grid(
    side: int, vae_kind: str, vae_stages: int, unet_downsamplings: int, downsample_padding: int = 1
) -> dict[str, Any]:
    """The sizes along the way, e.g. ``{"input": 980, "latent": 122, "grid": 31}``."""
    latent = latent_side(side, vae_kind, vae_stages)
    return {"input": side, "latent": latent, "grid": trunk_side(latent, unet_downsamplings, downsample_padding)}
