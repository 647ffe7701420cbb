"""Prompt sets for text embeddings (DESIGN §7; docs/corpora.md)."""

from __future__ import annotations

SIMPLE = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# The 80 ImageNet templates of the CLIP paper's zero-shot evaluation.
OPENAI = tuple(
    t.strip()
    for t in """
a bad photo of a {}.|a photo of many {}.|a sculpture of a {}.|a photo of the hard to see {}.|
a low resolution photo of the {}.|a rendering of a {}.|graffiti of a {}.|a bad photo of the {}.|
a cropped photo of the {}.|a tattoo of a {}.|the embroidered {}.|a photo of a hard to see {}.|
a bright photo of a {}.|a photo of a clean {}.|a photo of a dirty {}.|a dark photo of the {}.|
a drawing of a {}.|a photo of my {}.|the plastic {}.|a photo of the cool {}.|
a close-up photo of a {}.|a black and white photo of the {}.|a painting of the {}.|
a painting of a {}.|a pixelated photo of the {}.|a sculpture of the {}.|a bright photo of the {}.|
a cropped photo of a {}.|a plastic {}.|a photo of the dirty {}.|a jpeg corrupted photo of a {}.|
a blurry photo of the {}.|a photo of the {}.|a good photo of the {}.|a rendering of the {}.|
a {} in a video game.|a photo of one {}.|a doodle of a {}.|a close-up photo of the {}.|
a photo of a {}.|the origami {}.|the {} in a video game.|a sketch of a {}.|a doodle of the {}.|
a origami {}.|a low resolution photo of a {}.|the toy {}.|a rendition of the {}.|
a photo of the clean {}.|a photo of a large {}.|a rendition of a {}.|a photo of a nice {}.|
a photo of a weird {}.|a blurry photo of a {}.|a cartoon {}.|art of a {}.|a sketch of the {}.|
a embroidered {}.|a pixelated photo of a {}.|itap of the {}.|a jpeg corrupted photo of the {}.|
a good photo of a {}.|a plushie {}.|a photo of the nice {}.|a photo of the small {}.|
a photo of the weird {}.|the cartoon {}.|art of the {}.|a drawing of the {}.|
a photo of the large {}.|a black and white photo of a {}.|the plushie {}.|a dark photo of a {}.|
itap of a {}.|graffiti of the {}.|a toy {}.|itap of my {}.|a photo of a cool {}.|
a photo of a small {}.|a tattoo of the {}.""".split("|")
)

# Five generic photo templates (our choice for the paper's five-prompt ablation).
MING = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of many {}.",
    "a black and white photo of a {}.",
    "a photo of the large {}.",
)

# CSP's official templates (Chen et al., NeurIPS 2024): the nouns and the ID class names are
# embedded with the first set, the conjugated labels "<adjective> <superclass word>" with the
# second (docs/methods.md, CSP).
CSP = (
    "a close-up photo of the nice {}.",
    "a photo with the nice {}.",
    "a good photo with the nice {}.",
    "a photo of the nice {}.",
    "{}",
    "the {}",
    "the good {}",
    "the nice {}",
)
CSP_CONJUGATED = ("{}", "a nice photo of {}", "a good photo of {}", "a close-up photo of {}")
# The prompt set of every conjugated-label text file (rule embed_conjugated).
CONJUGATED_PROMPTS = "csp_conjugated"

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "simple": SIMPLE,
    "openai": OPENAI,
    "ming": MING,
    "basic": ("An image of a {}.",),
    "nice": ("the nice {}",),
    # CLIP's single default template; the offline demo model was trained on captions of this
    # form (docs/demo.md).
    "photo": ("a photo of a {}.",),
    "csp": CSP,
    CONJUGATED_PROMPTS: CSP_CONJUGATED,
}


def get_prompts(name: str) -> tuple[str, ...]:
    try:
        return PROMPT_SETS[name]
    except KeyError:
        raise KeyError(
            f"unknown prompt set '{name}'; choose one of {sorted(PROMPT_SETS)}"
        ) from None
