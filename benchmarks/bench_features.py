"""What GL-MCM's local features and CoVer's views add to the encoding, on this machine's CPU:
the ``features`` stage of the GPU check (benchmarks/gpu_check.py) run on the CPU.

- the image tower alone against the tower with its local patch features (one pass, the value
  path of the last block computed from its input), images/s, random weights;
- the CPU seconds per image of CoVer's 12 recommended views (the ImageNet-C corruptions of
  ``imagecorruptions``, one core), at the model's input size.

    python benchmarks/bench_features.py                      # ViT-B/16 at 224 px
    python benchmarks/bench_features.py --arch clustermine-tiny --seconds 1 --view-images 4
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0, help="timed per encoding")
    p.add_argument("--view-images", type=int, default=16)
    args = p.parse_args()
    path = Path(__file__).resolve().parent / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    check.DEVICE = "cpu"
    import torch

    print(f"bench_features: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)  # fmt: skip
    figures = check.stage_features(check.parse_args([
        "--features-arch", args.arch, "--encode-batch", str(args.batch),
        "--encode-seconds", str(args.seconds), "--view-images", str(args.view_images),
    ]))  # fmt: skip
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
