"""Pseudo-label probing (ClusterMine paper): a linear classifier with bias on z-scored ID-train
embeddings, trained with cross-entropy on zero-shot pseudo-labels (argmax over the positive
labels); the score is the probe's maximum softmax probability.

Adam with lr = base_lr · batch_size / 256 and weight decay, cosine schedule after a linear
warm-up over the first 10% of steps; seeded shuffling and initialisation.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from clustermine.compute import rows_within
from clustermine.detectors.base import Detector, DetectorConfigError
from clustermine.h5io import normalize
from clustermine.zeroshot import zero_shot_top1

log = logging.getLogger(__name__)


class PLPDetector(Detector):
    name = "plp"

    def _fit(self, train: np.ndarray | None, labels: np.ndarray | None) -> None:
        if train is None or not len(train):
            raise DetectorConfigError(f"{self.name}: needs ID-train image embeddings")
        p = self.params
        epochs, batch = int(p["epochs"]), int(p["batch_size"])
        if epochs < 1 or batch < 1:
            raise DetectorConfigError(f"{self.name}: epochs and batch_size must be >= 1")
        pseudo = zero_shot_top1(train, self.text_pos.embeddings, self.budget_bytes, self.device)
        train = normalize(train)  # a float32 copy, z-scored in place below
        mean = train.mean(axis=0, dtype=np.float64)
        std = train.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-12, std, 1.0)
        train -= mean.astype(np.float32)
        train /= std.astype(np.float32)
        weight, bias, stats = train_linear_probe(
            train,
            pseudo,
            len(self.text_pos.names),
            epochs=epochs,
            batch_size=batch,
            lr=float(p["base_lr"]) * batch / 256,
            weight_decay=float(p["weight_decay"]),
            warmup_fraction=float(p["warmup_fraction"]),
            seed=int(p["seed"]),
            device=self.device,
        )
        if len(np.unique(pseudo)) == 1:
            self.warn(
                "every ID-train image has the same pseudo-label: the probe learns one class "
                "and its maximum softmax probability is (nearly) constant"
            )
        self.state = {"mean": mean, "std": std, "weight": weight, "bias": bias}
        self.fit_stats.update(
            {
                **stats,
                "n_train": int(len(train)),
                "n_pseudo_classes": int(len(np.unique(pseudo))),
                "device": str(self.device),
            }
        )

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        x = image_emb / np.maximum(np.linalg.norm(image_emb, axis=1, keepdims=True), 1e-12)
        w = torch.as_tensor(self.state["weight"], dtype=torch.float32, device=self.device)
        b = torch.as_tensor(self.state["bias"], dtype=torch.float32, device=self.device)
        rows = rows_within(self.budget_bytes, 4 * 3 * max(len(b), x.shape[1]))
        out = np.empty(len(x))
        for r0 in range(0, len(x), rows):
            z = (x[r0 : r0 + rows] - self.state["mean"]) / self.state["std"]
            logits = torch.as_tensor(z, dtype=torch.float32, device=self.device) @ w.T + b
            msp = torch.softmax(logits.double(), dim=1).max(dim=1).values
            out[r0 : r0 + len(z)] = msp.cpu().numpy()
        return out


def train_linear_probe(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_fraction: float,
    seed: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Weights [K, D] and bias [K] of a cross-entropy linear probe (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(np.asarray(x, np.float32), device=device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=device)
    n, d = xt.shape
    layer = torch.nn.Linear(d, n_classes)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(d)
        layer.weight.copy_(torch.empty(n_classes, d).uniform_(-bound, bound, generator=gen))
        layer.bias.copy_(torch.empty(n_classes).uniform_(-bound, bound, generator=gen))
    layer = layer.to(device)
    opt = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_fraction * total))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    loss_sum = torch.zeros((), device=device)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum.zero_()
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            loss = torch.nn.functional.cross_entropy(layer(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
        if epoch == 0 or epoch + 1 == epochs or (epoch + 1) % 10 == 0:
            log.info("plp epoch %d/%d: loss %.4f", epoch + 1, epochs, loss_sum.item() / n)
    with torch.no_grad():  # in chunks: N × K logits would not fit for ImageNet and 4000 labels
        rows = rows_within(2**28, 4 * max(n_classes, d))
        hits = sum(
            int((layer(xt[lo : lo + rows]).argmax(dim=1) == yt[lo : lo + rows]).sum())
            for lo in range(0, n, rows)
        )
        acc = hits / n
    stats = {
        "final_epoch_loss": loss_sum.item() / n,
        "train_pseudo_accuracy": acc,
        "steps": total,
        "lr": lr,
    }
    return layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy(), stats
