"""AdaNeg (Zhang & Zhang, NeurIPS 2024): NegLabel's negatives made adaptive with a memory of
test images, following the OpenOOD-VLM postprocessor ``TTAPromptPostprocessor_noadagap``
(the one ``scripts/ood/adaneg/imagenet.sh`` runs).

Every proxy k — the C ID texts, then the M negative texts — has a memory of L + 1 slots:
slot 0 its text embedding, slots 1..L test images, empty (zero) at first. Per batch of the
stream, in this order:

1. S_v(x) = the grouped NegLabel score on logit_scale · cosine (probabilities, G groups of a
   seeded permutation of the first G·⌊M/G⌋ negatives, the remainder dropped, mean over groups).
2. Every image with S_v > thres + gap·(1 − thres) is written to the memory of its predicted ID
   class (argmax over the ID logits), every image with S_v < thres − gap·thres to that of its
   predicted negative label (argmax over all negative logits), one image after the other, with
   its entropy (of the softmax over the ID, resp. the negative, logits; −Σ p log(p + 1e-8)).
   A write goes to the slot the proxy's write pointer shows (starting at 1) and advances it;
   once the pointer reaches L the memory counts as full and a new image replaces the slot of
   largest stored entropy, if its own entropy is smaller than some stored one.
3. Adaptive proxies a_k(x) = normalise(Σ_l w_{k,l} m_{k,l}), w = exp(−β(1 − ⟨x̂, m_{k,l}⟩))
   (empty slots are zero and add nothing); with ``samada: false`` a_k = normalise(Σ_l m_{k,l}).
4. S_ada = the grouped score on logit_scale · ⟨x̂, a_k(x)⟩; S = S_ada + λ·S_v.

Faithful to the official code by default, including its odd details: the write pointer
starts at 1 and the memory counts as full at L, so slot L is never written by appending (it
stays empty and its entropy 0); the replacement compares with all L + 1 slots, the text slot
(entropy 0) included. β is an integer there (``int(5.5)`` = 5): the default here is 5.

The memory (P × (L + 1) × D float32; 11,000 proxies × 11 × 1024 is 0.5 GB) lives on the
compute device and is never copied per batch; ‖Σ_l w_l m_l‖ comes from each proxy's Gram
matrix of its slots (P × (L+1)², updated only for proxies written to), so no [B, P, D] tensor
is ever built.
"""

from __future__ import annotations

import numpy as np
import torch

from clustermine.compute import rows_within
from clustermine.detectors.base import Detector, DetectorConfigError


def grouped_id_probability(
    pos: torch.Tensor, neg: torch.Tensor, permutation: torch.Tensor, groups: int
) -> torch.Tensor:
    """mean over groups of Σ_pos softmax([pos, neg_group]) for logits [B, C] and [B, M]."""
    q = len(permutation) // groups
    lse_pos = torch.logsumexp(pos.double(), dim=1, keepdim=True)
    grouped = neg.double()[:, permutation].view(len(neg), groups, q)
    lse_neg = torch.logsumexp(grouped, dim=2)
    return torch.exp(lse_pos - torch.logaddexp(lse_pos, lse_neg)).mean(dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits.double(), dim=-1)
    return -(p * torch.log(p + 1e-8)).sum(dim=-1)


class AdaNegDetector(Detector):
    name = "adaneg"

    def _fit(self, train, labels) -> None:
        p = self.params
        m, groups = len(self.text_neg.names), int(p["groups"])
        if not 1 <= groups <= m:
            raise DetectorConfigError(
                f"{self.name}: groups must be between 1 and the {m} negatives, got {groups}"
            )
        if int(p["memory"]) < 1:
            raise DetectorConfigError(f"{self.name}: memory must be at least 1 slot")
        q = m // groups
        texts = np.concatenate([self.text_pos.embeddings, self.text_neg.embeddings])
        slots = int(p["memory"]) + 1
        memory = np.zeros((len(texts), slots, texts.shape[1]), dtype=np.float32)
        memory[:, 0] = texts
        self.state = {
            "permutation": np.random.default_rng(int(p["seed"])).permutation(groups * q),
            "memory": memory,
            "pointer": np.ones(len(texts), dtype=np.int64),
            "entropy": np.zeros((len(texts), slots), dtype=np.float64),
        }
        self.fit_stats.update({"groups": groups, "group_size": q, "proxies": len(texts)})

    # --- state on the device ----------------------------------------------------------------

    def _live(self) -> dict:
        """The memory and its Gram matrices on the compute device (made on first use); the
        pointers and entropies stay in ``state`` on the host."""
        live = getattr(self, "_live_state", None)
        if live is None or live["memory"].device != self.device:
            memory = torch.as_tensor(self.state["memory"], device=self.device)
            live = {
                "memory": memory,
                "gram": torch.bmm(memory, memory.transpose(1, 2)),
                "permutation": torch.as_tensor(self.state["permutation"], device=self.device),
            }
            self._live_state = live
        return live

    def sync_state(self) -> None:
        """Copy the device memory back into ``state`` (before saving)."""
        live = getattr(self, "_live_state", None)
        if live is not None:
            self.state["memory"] = live["memory"].cpu().numpy()

    def reset_state(self, fitted: dict) -> None:
        super().reset_state(fitted)
        self._live_state = None

    # --- scoring ------------------------------------------------------------------------------

    def _score(self, image_emb: np.ndarray) -> np.ndarray:
        batch = int(self.params["stream_batch_size"])
        out = np.empty(len(image_emb))
        for b0 in range(0, len(image_emb), batch):
            out[b0 : b0 + batch] = self._score_batch(image_emb[b0 : b0 + batch])
        return out

    def _score_batch(self, image_emb: np.ndarray) -> np.ndarray:
        p, live = self.params, self._live()
        c, groups, scale = len(self.text_pos.names), int(p["groups"]), self.logit_scale
        x = torch.nn.functional.normalize(
            torch.as_tensor(np.asarray(image_emb, np.float32), device=self.device), dim=1
        )
        memory, perm = live["memory"], live["permutation"]
        logits = scale * (x @ memory[:, 0].T)  # vanilla logits to the text of every proxy
        s_v = grouped_id_probability(logits[:, :c], logits[:, c:], perm, groups)
        thres, gap = float(p["thres"]), float(p["gap"])
        written = self._write(x, logits, s_v > thres + gap * (1 - thres), 0, c)
        written |= self._write(x, logits, s_v < thres - gap * thres, c, len(memory))
        if written:
            changed = torch.as_tensor(sorted(written), device=self.device)
            live["gram"][changed] = torch.bmm(memory[changed], memory[changed].transpose(1, 2))
        ada = self._adaptive_logits(x) * scale
        s_ada = grouped_id_probability(ada[:, :c], ada[:, c:], perm, groups)
        return (s_ada + float(p["lam"]) * s_v).cpu().numpy()

    def _write(self, x, logits, chosen, lo: int, hi: int) -> set[int]:
        """Write the chosen images, in order, to the memory of their predicted proxy in
        [lo, hi); returns the proxies written to."""
        rows = torch.nonzero(chosen).squeeze(1).tolist()
        if not rows:
            return set()
        part = logits[rows, lo:hi]
        predicted = (part.argmax(dim=1) + lo).tolist()
        entropies = entropy(part).tolist()
        memory, pointer, stored = self._live()["memory"], self.state["pointer"], self.state["entropy"]
        full = int(self.params["memory"])
        writes: dict[tuple[int, int], int] = {}
        for row, proxy, ent in zip(rows, predicted, entropies):
            if pointer[proxy] == full:
                if not (ent < stored[proxy]).any():
                    continue
                # The slot of largest entropy (the last of equal ones, as an ascending sort).
                slot = len(stored[proxy]) - 1 - int(np.argmax(stored[proxy][::-1]))
            else:
                slot = int(pointer[proxy])
                pointer[proxy] += 1
            stored[proxy, slot] = ent
            writes[(proxy, slot)] = row  # a later image of the batch overwrites an earlier one
        proxies = torch.as_tensor([k[0] for k in writes], device=self.device)
        slots = torch.as_tensor([k[1] for k in writes], device=self.device)
        memory[proxies, slots] = x[list(writes.values())]
        return {k[0] for k in writes}

    def _adaptive_logits(self, x: torch.Tensor) -> torch.Tensor:
        """⟨x̂, a_k(x)⟩ for every proxy k, [B, P]."""
        live = self._live()
        memory, gram = live["memory"], live["gram"]
        n_proxies, slots, dim = memory.shape
        if not self.params["samada"]:
            summed = torch.nn.functional.normalize(memory.sum(dim=1), dim=1)
            return x @ summed.T
        beta = float(self.params["beta"])
        out = torch.empty((len(x), n_proxies), device=x.device)
        # Per image: its [P, L+1] similarities to every slot, twice (weights, Gram products).
        rows = rows_within(self.budget_bytes, 4 * 4 * n_proxies * slots, len(x))
        flat = memory.view(n_proxies * slots, dim)
        for b0 in range(0, len(x), rows):
            sims = (x[b0 : b0 + rows] @ flat.T).view(-1, n_proxies, slots)
            w = torch.exp(-beta * (1.0 - sims))
            numerator = (w * sims).sum(dim=2)
            norm_sq = torch.einsum("bpl,plm,bpm->bp", w, gram, w).clamp_min(1e-24)
            out[b0 : b0 + rows] = numerator / norm_sq.sqrt()
        return out
