"""The public image sets of the paper's ImageNet benchmark and of OpenOOD v1.5, with the number
of images each release holds: the one place these counts live. A dataset of the config names
its public set with ``public: <name>``; the pre-flight data check (clustermine.datacheck)
compares what it finds on disk with the count here. docs/results.md ("Where the data come
from") gives each set's source, licence and layout, and where each count was checked.

Torch-free: the config schema reads the names when the workflow is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicSet:
    name: str
    title: str
    images: int
    classes: int | None
    source: str  # where the count comes from


_SETS = [
    # ImageNet-1K (ILSVRC 2012) and its covariate-shifted test sets.
    PublicSet("imagenet-train", "ImageNet-1K train (ILSVRC 2012)", 1_281_167, 1000,
              "ILSVRC 2012 release (Russakovsky et al., IJCV 2015)"),
    PublicSet("imagenet-val", "ImageNet-1K val (ILSVRC 2012)", 50_000, 1000,
              "ILSVRC 2012 release: 50 per class"),
    PublicSet("imagenet-v2", "ImageNetV2 matched-frequency", 10_000, 1000,
              "Recht et al., ICML 2019: 10 per class"),
    PublicSet("imagenet-c", "ImageNet-C, the 15 benchmark corruptions", 3_750_000, 1000,
              "Hendrycks & Dietterich, ICLR 2019: 15 corruptions x 5 severities x the 50,000 "
              "val images (the 4 extra corruptions add 1,000,000)"),
    PublicSet("imagenet-a", "ImageNet-A", 7_500, 200, "Hendrycks et al., CVPR 2021"),
    PublicSet("imagenet-r", "ImageNet-R", 30_000, 200, "Hendrycks et al., ICCV 2021"),
    PublicSet("imagenet-sketch", "ImageNet-Sketch", 50_889, 1000,
              "Wang et al., NeurIPS 2019 (release README)"),
    # OOD sets of the paper's main table and Table 7.
    PublicSet("ninco", "NINCO (NINCO_OOD_classes)", 5_879, 64,
              "Bitterwolf et al., ICML 2023; NINCO repository README"),
    PublicSet("imagenet-o", "ImageNet-O", 2_000, 200, "Hendrycks et al., CVPR 2021"),
    PublicSet("openimage-o", "OpenImage-O (ViM list)", 17_632, None,
              "Wang et al., CVPR 2022 (ViM); = OpenOOD v1.5's test 15,869 + val 1,763"),
    PublicSet("inaturalist", "iNaturalist subset of MOS", 10_000, 110,
              "Huang & Li, CVPR 2021 (MOS)"),
    PublicSet("sun", "SUN subset of MOS", 10_000, 50, "Huang & Li, CVPR 2021 (MOS)"),
    PublicSet("places", "Places subset of MOS", 10_000, 50, "Huang & Li, CVPR 2021 (MOS)"),
    PublicSet("imagenet-ood", "ImageNet-OOD", 31_802, 637,
              "Yang et al., ICLR 2024; the authors' file list imagenetood.txt"),
    PublicSet("textures-full", "Describable Textures Dataset (DTD), all images", 5_640, 47,
              "Cimpoi et al., CVPR 2014: 120 per class"),
    # OpenOOD v1.5 (Zhang et al., 2023) ImageNet-1K benchmark lists.
    PublicSet("textures", "Textures as listed by OpenOOD v1.5 (test_textures.txt)", 5_160, None,
              "OpenOOD v1.5 paper, ImageNet-1K far-OOD"),
    PublicSet("ssb-hard", "SSB-hard as listed by OpenOOD v1.5 (test_ssb_hard.txt)", 49_000, None,
              "OpenOOD v1.5 paper, ImageNet-1K near-OOD"),
    PublicSet("openimage-o-openood", "OpenImage-O, OpenOOD v1.5 test split "
              "(test_openimage_o.txt)", 15_869, None,
              "OpenOOD v1.5 list (counted in its copy shipped by pytorch-ood)"),
]  # fmt: skip

PUBLIC_SETS: dict[str, PublicSet] = {s.name: s for s in _SETS}


def public_set(name: str) -> PublicSet:
    if name not in PUBLIC_SETS:
        raise KeyError(f"unknown public set {name!r}; known: {', '.join(PUBLIC_SETS)}")
    return PUBLIC_SETS[name]
