"""OOD scores (config ``methods.<slug>.score``): detectors fitted once from ID-train embeddings
and label texts, then scoring image embeddings, higher = more in-distribution
(docs/methods.md). Every implementation is a :class:`clustermine.detectors.Detector` subclass
whose ``name`` is the name declared here; its parameters are the ones declared here.
"""

from __future__ import annotations

from clustermine.catalog.plugin import Param, Plugin

POSITIVE = {"type": "number", "exclusiveMinimum": 0}
SEED = Param("seed", 0, {"type": "integer"}, "seed (default: the config's global seed)",
             role="seed")
TAU = (
    Param("tau_factor", 0.1, POSITIVE, "τ = tau_factor / logit_scale of the model"),
    Param(
        "tau",
        None,
        {"type": ["number", "null"], "exclusiveMinimum": 0},
        "an absolute τ instead (NegLabel: 0.01)",
    ),
)
GROUPS = Param("groups", 100, {"type": "integer", "minimum": 1}, "G, seeded groups of negatives")
TEMPERATURE = Param("temperature", 1.0, POSITIVE, "softmax temperature T")
GAUSSIAN = (
    Param(
        "class_source",
        "zero_shot",
        {"enum": ["zero_shot", "ground_truth"]},
        "class labels of the ID-train images: zero-shot over the positives, or ground truth",
    ),
    Param("inverse", "pinv", {"enum": ["pinv", "solve"]}, "how the covariance is inverted"),
    Param(
        "covariance",
        "class_mean",
        {"enum": ["class_mean", "pooled"]},
        "shared covariance: the mean of the per-class covariances, or all class-centred "
        "features pooled (the official code; they differ when classes differ in size)",
    ),
)
LABELS = frozenset({"positives"})
STREAM_SEED = Param(
    "stream_seed", 0, {"type": "integer"},
    "seed of the shuffle of every (ID test set, benchmark) stream",
)  # fmt: skip
# OODD's dictionary of OOD test features, shared by its two variants (docs/methods.md).
OODD_QUEUE = (
    Param("k2", 5, {"type": "integer", "minimum": 1},
          "K2: the K2-th largest cosine to the queued OOD features is subtracted"),
    Param("queue_size", 2048, {"type": "integer", "minimum": 1},
          "Q, the number of most OOD-like test features the queue keeps"),
)  # fmt: skip


def oodd_batch(default: int) -> Param:
    return Param("stream_batch_size", default, {"type": "integer", "minimum": 1},
                 "images put into the queue together before they are scored")  # fmt: skip


_SCORES = (
    Plugin(
        "score",
        "eq1",
        "log S(x), S = Σ_pos e^{s/τ} / (Σ_pos e^{s/τ} + Σ_neg e^{s/τ})",
        "ClusterMine Eq. 1; NegLabel's score without grouping",
        "clustermine.detectors.eq1:Eq1Detector",
        params=TAU,
        needs=frozenset({"positives", "negatives"}),
    ),
    Plugin(
        "score",
        "eq1_grouped",
        "log of the mean over G groups of S with the negatives of one group",
        "NegLabel (Jiang et al., ICLR 2024)",
        "clustermine.detectors.eq1_grouped:Eq1GroupedDetector",
        params=(
            *TAU,
            GROUPS,
            Param(
                "remainder",
                "spread",
                {"enum": ["spread", "drop"]},
                "when G does not divide M: keep every negative in groups of ⌊M/G⌋ and ⌈M/G⌉, "
                "or drop the last M mod G (NegLabel's official code)",
            ),
            SEED,
        ),
        needs=frozenset({"positives", "negatives"}),
        small={"groups": 2},
    ),
    Plugin(
        "score",
        "debiased",
        "log mean_j A / Z_j with the debiased partition function Z_j of each negative group",
        "Debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026)",
        "clustermine.detectors.debiased:DebiasedDetector",
        params=(
            Param("temperature", 0.01, POSITIVE, "softmax temperature T of the cosines"),
            GROUPS,
            Param("tau_ood", 0.5, {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                  "τ, the share of true negatives (0.12 for ViT-B/32 and ViT-L/14@336; 1.0 "
                  "for covariate-shifted ID sets; 1.0 is grouped NegLabel)"),
            Param("kappa", "adapt_groups", {"enum": ["adapt_groups", "refuse"]},
                  "when κ = Q(1−τ)/(τC) ≥ 1: raise the number of groups until κ < 1, or stop"),
            SEED,
        ),  # fmt: skip
        needs=frozenset({"positives", "negatives"}),
        small={"groups": 2},
    ),
    Plugin(
        "score",
        "clipscope",
        "log p(ŷ|x)·P_ID(x)/π(ŷ), π the running histogram of predicted ID classes",
        "CLIPScope (Fu, Patel, Krishnamurthy, Khorrami, 2024)",
        "clustermine.detectors.clipscope:CLIPScopeDetector",
        params=(STREAM_SEED,),
        needs=frozenset({"positives", "negatives", "stream"}),
    ),
    Plugin(
        "score",
        "clipscope_static",
        "CLIPScope with π uniform: log p(ŷ|x)·P_ID(x), no test-time state",
        "CLIPScope (Fu et al., 2024), without its histogram",
        "clustermine.detectors.clipscope:CLIPScopeStaticDetector",
        needs=frozenset({"positives", "negatives"}),
    ),
    Plugin(
        "score",
        "adaneg",
        "S_ada + λ·S_v: grouped NegLabel on proxies adapted by a memory of test images",
        "AdaNeg (Zhang & Zhang, NeurIPS 2024; OpenOOD-VLM TTAPromptPostprocessor_noadagap)",
        "clustermine.detectors.adaneg:AdaNegDetector",
        params=(
            Param("groups", 5, {"type": "integer", "minimum": 1}, "G, seeded groups of negatives"),
            Param("thres", 0.5, {"type": "number", "minimum": 0, "maximum": 1},
                  "centre of the write thresholds on S_v"),
            Param("gap", 0.5, {"type": "number", "minimum": 0, "maximum": 1},
                  "width of the band around thres in which nothing is written"),
            Param("memory", 10, {"type": "integer", "minimum": 1}, "L, memory slots per proxy"),
            Param("lam", 0.1, {"type": "number", "minimum": 0}, "λ, weight of S_v in the score"),
            Param("beta", 5.0, POSITIVE, "β of the slot weights exp(−β(1 − cos))"),
            Param("samada", True, {"type": "boolean"},
                  "sample-adaptive proxies (false: the mean of the slots)"),
            Param("stream_batch_size", 256, {"type": "integer", "minimum": 1},
                  "images per memory update (OpenOOD's test batch size)"),
            STREAM_SEED,
            SEED,
        ),  # fmt: skip
        needs=frozenset({"positives", "negatives", "stream"}),
        small={"groups": 2, "stream_batch_size": 8},
    ),
    Plugin(
        "score",
        "oodd",
        "s_ID − K2-th largest cosine to a queue of the Q lowest-s_ID test features; s_ID = "
        "K1-th largest cosine to informative ID-train features",
        "OODD (Yang et al., CVPR 2025; official OpenOOD postprocessor)",
        "clustermine.detectors.oodd:OODDDetector",
        params=(
            Param("k1", 100, {"type": "integer", "minimum": 1},
                  "K1: s_ID is the K1-th largest cosine to the kept ID-train features"),
            *OODD_QUEUE,
            Param("inlier_fraction", 0.5, {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                  "α, the share of ID-train features kept by informative inlier sampling"),
            oodd_batch(512),
            STREAM_SEED,
        ),  # fmt: skip
        needs=frozenset({"train_embeddings", "positives", "stream"}),
        small={"k1": 3, "k2": 2, "queue_size": 8, "stream_batch_size": 4},
    ),
    Plugin(
        "score",
        "oodd_mcm",
        "OODD with s_ID = MCM (its CLIP variant)",
        "OODD (Yang et al., CVPR 2025; official MCM+OODD code)",
        "clustermine.detectors.oodd:OODDMCMDetector",
        params=(TEMPERATURE, *OODD_QUEUE, oodd_batch(64), STREAM_SEED),
        needs=frozenset({"positives", "stream"}),
        small={"k2": 2, "queue_size": 8, "stream_batch_size": 4},
    ),
    Plugin(
        "score",
        "mcm",
        "max_c softmax_c(s/T) over Y_pos",
        "MCM (Ming et al., NeurIPS 2022)",
        "clustermine.detectors.mcm:MCMDetector",
        params=(TEMPERATURE,),
        needs=LABELS,
    ),
    Plugin(
        "score",
        "eoe",
        "max_{Y_pos} p − β · max_{Y_neg} p, p = one softmax of s/T over Y_pos ∪ Y_neg "
        "(Y_neg: the outlier names)",
        "EOE (Cao et al., ICML 2024; official code tmlr-group/EOE)",
        "clustermine.detectors.eoe:EOEDetector",
        params=(
            Param("beta", 0.25, {"type": "number", "minimum": 0},
                  "β, the weight of the outlier penalty (EOE: 0.25)"),
            TEMPERATURE,
        ),  # fmt: skip
        needs=frozenset({"positives", "negatives"}),
    ),
    Plugin(
        "score",
        "maxlogit",
        "max_c s_c",
        "MaxLogit (Hendrycks et al., ICML 2022)",
        "clustermine.detectors.maxlogit:MaxLogitDetector",
        needs=LABELS,
    ),
    Plugin(
        "score",
        "energy",
        "T · logsumexp_c(logit_scale · s_c / T)",
        "Energy (Liu et al., NeurIPS 2020)",
        "clustermine.detectors.energy:EnergyDetector",
        params=(TEMPERATURE,),
        needs=LABELS,
    ),
    Plugin(
        "score",
        "mahalanobis",
        "−min_c (x̂ − μ_c)ᵀ Σ⁻¹ (x̂ − μ_c)",
        "Lee et al., NeurIPS 2018",
        "clustermine.detectors.mahalanobis:MahalanobisDetector",
        params=GAUSSIAN,
        needs=frozenset({"positives", "train_embeddings"}),
    ),
    Plugin(
        "score",
        "relative_mahalanobis",
        "−(min_c MD_c(x̂) − MD_0(x̂))",
        "Ren et al., arXiv 2106.09022 (2021)",
        "clustermine.detectors.relative_mahalanobis:RelativeMahalanobisDetector",
        params=GAUSSIAN,
        needs=frozenset({"positives", "train_embeddings"}),
    ),
    Plugin(
        "score",
        "plp",
        "max softmax of a linear probe trained on zero-shot pseudo-labels",
        "ClusterMine paper (pseudo-label probing)",
        "clustermine.detectors.plp:PLPDetector",
        params=(
            Param("epochs", 100, {"type": "integer", "minimum": 1}, "training epochs"),
            Param("batch_size", 256, {"type": "integer", "minimum": 1}, "training batch size"),
            Param("base_lr", 1e-3, POSITIVE, "Adam learning rate per 256 samples"),
            Param("weight_decay", 1e-3, {"type": "number", "minimum": 0}, "Adam weight decay"),
            Param(
                "warmup_fraction",
                0.1,
                {"type": "number", "minimum": 0, "maximum": 1},
                "share of steps of linear warm-up",
            ),
            SEED,
        ),
        needs=frozenset({"positives", "train_embeddings"}),
        small={"epochs": 2},
    ),
)

# CoVer's base: a score over label texts alone, without test-time state.
COVER_BASES = tuple(p.name for p in _SCORES if p.needs <= {"positives", "negatives"})
VIEW_NAME = r"^[a-z_]+-[1-5]$"

SCORE_PLUGINS = (
    *_SCORES,
    Plugin(
        "score",
        "gl_mcm",
        "MCM(global) + λ · max over patches of MCM(local patch feature)",
        "GL-MCM (Miyai et al., IJCV 2025; official code AtsuMiyai/GL-MCM)",
        "clustermine.detectors.gl_mcm:GLMCMDetector",
        params=(
            TEMPERATURE,
            Param("lam", 1.0, {"type": "number", "minimum": 0},
                  "λ, the weight of the local term (official: 1)"),
        ),  # fmt: skip
        needs=frozenset({"positives", "local_features"}),
    ),
    Plugin(
        "score",
        "cover",
        "mean of a base score over the image and its corrupted views",
        "CoVer (Zhang et al., NeurIPS 2024; official code tmlr-group/CoVer)",
        "clustermine.detectors.cover:CoVerDetector",
        params=(
            Param("base", "mcm", {"enum": list(COVER_BASES)},
                  "the score averaged over the views (official: MCM)"),
            Param("base_params", {}, {"type": "object"}, "the base score's parameters",
                  params_of="base"),
            Param("views", "recommended",
                  {"type": ["string", "array"], "items": {"type": "string",
                                                          "pattern": VIEW_NAME}},
                  "a preset (recommended: 6 corruptions at severities 1-2; full: 18 at 1-5) "
                  "or a list of <corruption>-<severity>; the original image always counts",
                  role="views"),
        ),  # fmt: skip
        needs=frozenset({"positives", "views"}),
        small={"views": ["gaussian_noise-1", "gaussian_blur-2"]},
    ),
)
