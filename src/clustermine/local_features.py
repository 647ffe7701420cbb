"""Local patch features of an image tower: one joint-space feature per patch (GL-MCM).

The local feature of a patch follows the image's own path through the tower's last attention
layer, but through its value path only, so that it stays with that patch (Miyai et al., GL-MCM;
the same construction as MaskCLIP):

- **ViT** (open_clip's ``VisionTransformer`` with class-token pooling, OpenAI style): the input
  ``x`` of the last residual block gives, per patch token,
  ``h = x + ls_1(W_o (W_v ln_1(x) + b_v) + b_o)``, ``h = h + ls_2(mlp(ln_2(h)))``, and the
  feature ``ln_post(h) @ proj`` (``ls_1``, ``ls_2`` the LayerScale of towers that have one,
  identities otherwise). The class token is left out: P = grid².
- **ModifiedResNet** (CLIP's ResNets): the feature map ``x`` entering the attention pool gives,
  per position, ``c_proj(v_proj(x))``, without the pool's positional embedding (as the
  official code).

Other towers (timm towers, attention-pool or average-pool ViTs, towers with a different last
block) have no such value path: :func:`local_support` says why, naming the model, and
:func:`encode_local` refuses them.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


class LocalFeaturesUnsupported(ValueError):
    """An image tower whose local patch features are not defined."""


def local_support(model, arch: str = "this model") -> str | None:
    """None when local features of ``model``'s image tower are defined, else why not."""
    visual = getattr(model, "visual", None)
    kind = type(visual).__name__
    if kind == "ModifiedResNet":
        pool = getattr(visual, "attnpool", None)
        if type(pool).__name__ != "AttentionPool2d":
            return f"{arch}: its ResNet tower has no CLIP attention pool ({type(pool).__name__})"
        return None
    if kind != "VisionTransformer":
        return (
            f"{arch}: local patch features are defined for open_clip's ViT and ModifiedResNet "
            f"towers; its image tower is a {kind}"
        )
    if getattr(visual, "attn_pool", None) is not None:
        return f"{arch}: its ViT pools with an attentional pooler, not a class token"
    if getattr(visual, "pool_type", "tok") != "tok" or getattr(visual, "final_ln_after_pool", False):
        return (
            f"{arch}: its ViT pools by {getattr(visual, 'pool_type', '?')!r} (class-token "
            "pooling with ln_post before it is needed)"
        )
    if visual.proj is None:
        return f"{arch}: its ViT has no projection into the joint space"
    block = visual.transformer.resblocks[-1]
    attn = getattr(block, "attn", None)
    if (
        type(block).__name__ != "ResidualAttentionBlock"
        or not isinstance(attn, torch.nn.MultiheadAttention)
        or hasattr(block, "ln_1_kv")
        or attn.in_proj_weight is None
    ):
        return f"{arch}: the last block of its ViT is not a standard attention block"
    return None


def check_local_support(model, arch: str) -> None:
    why = local_support(model, arch)
    if why:
        raise LocalFeaturesUnsupported(
            f"{why}; methods that need local features (GL-MCM) cannot use it: choose an "
            "OpenAI-style ViT or a CLIP ResNet"
        )


@contextlib.contextmanager
def _captured_input(module: torch.nn.Module):
    """The first positional input of ``module`` in the forward pass run inside the block."""
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, args):
        seen["x"] = args[0]

    handle = module.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _vit_local(visual, x: torch.Tensor) -> torch.Tensor:
    transformer = visual.transformer
    if not getattr(transformer, "batch_first", True):
        x = x.transpose(0, 1)  # LND -> NLD
    block = transformer.resblocks[-1]
    attn = block.attn
    width = x.shape[-1]
    w_v = attn.in_proj_weight[2 * width :]
    b_v = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width :]
    v = F.linear(block.ln_1(x), w_v, b_v)
    v = attn.out_proj(v)
    h = x + block.ls_1(v)
    h = h + block.ls_2(block.mlp(block.ln_2(h)))
    h = visual.ln_post(h)
    return h[:, 1:] @ visual.proj


def _resnet_local(visual, x: torch.Tensor) -> torch.Tensor:
    pool = visual.attnpool
    x = x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, HW, C]
    return pool.c_proj(pool.v_proj(x))


def encode_local(model, images: torch.Tensor, arch: str = "this model"):
    """(global embeddings [B, D], local features [B, P, D]) of a batch, from one pass of the
    image tower; neither is normalised."""
    check_local_support(model, arch)
    visual = model.visual
    resnet = type(visual).__name__ == "ModifiedResNet"
    tap = visual.attnpool if resnet else visual.transformer.resblocks[-1]
    with _captured_input(tap) as seen:
        pooled = model.encode_image(images)
    x = seen["x"]
    local = _resnet_local(visual, x) if resnet else _vit_local(visual, x)
    return pooled, local
