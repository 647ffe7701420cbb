"""Label miners (config ``label_sets.<slug>.miner``): they turn a text corpus, and for the
label-free ones the ID-train images, into positive and negative labels (docs/methods.md).

Every implementation is ``fn(inputs: MiningInputs, **params) -> LabelSet`` with exactly the
parameters declared here, all keyword-only and without defaults of its own.
"""

from __future__ import annotations

from clustermine.catalog.plugin import Param, Plugin

INTEGER = {"type": "integer", "minimum": 1}
FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
SLUG = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}

NEGATIVES = (
    Param(
        "negatives",
        "complement",
        {"enum": ["complement", "dissimilar", "none"]},
        "how Y_neg is chosen among the names that are not positive: all of them "
        "(`complement`), the `num_negatives` least similar to the positives (`dissimilar`, "
        "NegLabel's rule) or none",
    ),
    Param("num_negatives", 10000, INTEGER, "K, the number of negatives kept by `dissimilar`",
          axis="K"),  # fmt: skip
    Param("quantile", 0.95, FRACTION, "the similarity quantile `dissimilar` ranks candidates by"),
)
MISSING_GT = Param(
    "missing_gt",
    "error",
    {"enum": ["error", "drop"]},
    "ID class names missing from the corpus when no class-name embeddings exist: fail, or "
    "leave them out of Y_GT",
)
POSITIVES_OF = Param(
    "positives_of", None, SLUG,
    "take the positives of this label set (e.g. clustermine) instead of Y_GT", role="label_set",
)  # fmt: skip
CLUSTERS = (
    Param("clusterer", None, SLUG, "slug of the clusterer whose assignments are used", True,
          role="clusterer"),
    Param("C", None, {"type": "integer", "minimum": 2}, "number of clusters", True,
          role="num_clusters", axis="C"),
)
# Small-data settings of the clustering miners (the end-to-end tests' clusterer is k-means).
SMALL_CLUSTERS = {"C": 3}

MINER_PLUGINS = (
    Plugin(
        "miner",
        "gt",
        "Y_GT: the ID class names themselves (the zero-shot baselines)",
        "MCM (Ming et al., NeurIPS 2022)",
        "clustermine.mining.gt:mine_gt",
        params=(*NEGATIVES, MISSING_GT),
        needs=frozenset({"class_names"}),
    ),
    Plugin(
        "miner",
        "gt_aug",
        "Y_GT plus the `num_aug` corpus names most similar to it",
        "ClusterMine paper, Tab. 4 (Y_GT ∪ Y_aug)",
        "clustermine.mining.gt_aug:mine_gt_aug",
        params=(
            Param("num_aug", 500, {"type": "integer", "minimum": 0}, "names added to Y_GT"),
            *NEGATIVES,
            MISSING_GT,
        ),
        needs=frozenset({"class_names"}),
        small={"num_aug": 3},
    ),
    Plugin(
        "miner",
        "posmine",
        "corpus names that are the zero-shot top-1 of at least M ID-train images",
        "ClusterMine paper (Adaloglou et al., WACV 2026), baseline",
        "clustermine.mining.posmine:mine_posmine",
        params=(
            Param("min_votes", 100, INTEGER, "M, the images a name must be the top-1 of",
                  axis="M"),
            Param(
                "num_positives",
                None,
                {"type": ["integer", "null"], "minimum": 1},
                "keep the N most voted names instead of a vote threshold",
            ),
            *NEGATIVES,
        ),
        input_keys=(
            Param(
                "match_positives_of",
                None,
                SLUG,
                "a label set whose |Y_pos| sets `num_positives` (equal-|Y_pos| comparisons)",
                role="label_set",
            ),
        ),
        needs=frozenset({"zero_shot"}),
        small={"min_votes": 2},
    ),
    Plugin(
        "miner",
        "clustermine",
        "each cluster of ID-train images votes its majority zero-shot label",
        "ClusterMine (Adaloglou et al., WACV 2026)",
        "clustermine.mining.clustermine:mine_clustermine",
        params=NEGATIVES,
        input_keys=CLUSTERS,
        needs=frozenset({"zero_shot", "clusters"}),
        small=SMALL_CLUSTERS,
    ),
    Plugin(
        "miner",
        "gradnorm",
        "per cluster, the top_k corpus names of smallest gradient norm of a prototype classifier",
        "GradNorm filtering (Peng et al., ICCV 2025)",
        "clustermine.mining.gradnorm:mine_gradnorm",
        params=(
            Param("temperature", 0.02, {"type": "number", "exclusiveMinimum": 0},
                  "softmax temperature over the cluster prototypes"),
            Param("top_k", 3, INTEGER, "names kept per cluster"),
            *NEGATIVES,
        ),  # fmt: skip
        input_keys=CLUSTERS,
        needs=frozenset({"clusters", "image_embeddings", "zero_shot"}),
        small={**SMALL_CLUSTERS, "top_k": 2},
    ),
    Plugin(
        "miner",
        "debiased",
        "negatives of densest raw text features, no ID label used; positives Y_GT or another "
        "label set's",
        "Debiased negative mining (Peng, Lu, Zhang, Fang, KDD 2026)",
        "clustermine.mining.debiased:mine_debiased",
        params=(
            Param("k1", 100, INTEGER, "neighbours of the density (10 for ViT-B/32 in the paper)",
                  role="density_k"),
            Param("noun_fraction", 0.23, FRACTION, "share of the nouns kept, densest first"),
            Param("adjective_fraction", 0.13, FRACTION,
                  "share of the adjectives kept, densest first"),
            MISSING_GT,
        ),  # fmt: skip
        input_keys=(POSITIVES_OF,),
        needs=frozenset({"text_density"}),
        small={"k1": 5},
    ),
    Plugin(
        "miner",
        "names_file",
        "negatives: the corpus names listed in a user's file (e.g. EOE's LLM-envisioned "
        "outlier names); positives Y_GT or another label set's",
        "EOE (Cao et al., ICML 2024): outlier class names from an LLM",
        "clustermine.mining.names_file:mine_names_file",
        params=(
            Param("missing_names", "error", {"enum": ["error", "drop"]},
                  "names of the file that are not corpus names: fail, naming them, or leave "
                  "them out"),
            MISSING_GT,
        ),
        input_keys=(
            Param("negatives_file", None, {"type": "string", "pattern": r"\S"},
                  "path of the file of negative names, one per line (`#` comments)", True,
                  role="file"),
            POSITIVES_OF,
        ),
    ),
    Plugin(
        "miner",
        "clipscope",
        "Y_GT and the names of smallest and largest rank-th cosine to it",
        "CLIPScope (Fu, Patel, Krishnamurthy, Khorrami, 2024)",
        "clustermine.mining.clipscope:mine_clipscope",
        params=(
            Param("rank", 50, INTEGER, "v_w is the rank-th largest cosine of w to the Y_GT texts"),
            Param("num_low", 5000, {"type": "integer", "minimum": 0}, "names of smallest v_w kept"),
            Param("num_high", 5000, {"type": "integer", "minimum": 0}, "names of largest v_w kept"),
            MISSING_GT,
        ),  # fmt: skip
        needs=frozenset({"class_names"}),
        small={"rank": 2, "num_low": 10, "num_high": 10},
    ),
    Plugin(
        "miner",
        "neglabel",
        "Y_GT and the K corpus names least similar to it (0.95-quantile cosine)",
        "NegLabel (Jiang et al., ICLR 2024)",
        "clustermine.mining.neglabel:mine_neglabel",
        params=(
            Param("num_negatives", 10000, INTEGER, "K (NegLabel*: 40,000)", axis="K"),
            NEGATIVES[2],
            MISSING_GT,
        ),
        needs=frozenset({"class_names"}),
        small={"num_negatives": 10},
    ),
    Plugin(
        "miner",
        "csp",
        "NegLabel's rule on corpus nouns and conjugated labels \"<adjective> <superclass "
        "word>\", a share of each kind kept; positives Y_GT or another label set's",
        "CSP (Chen, Gao, Xu, NeurIPS 2024)",
        "clustermine.mining.csp:mine_csp",
        params=(
            Param("noun_fraction", 0.15, FRACTION, "share of the nouns kept, least similar first"),
            Param("conjugated_fraction", 0.15, FRACTION,
                  "share of the conjugated labels kept, least similar first"),
            NEGATIVES[2],
            Param("duplicate_cosine", 0.95, {"type": "number"},
                  "a candidate whose largest cosine to a positive exceeds it ranks last"),
            Param("seed", 0, {"type": "integer"},
                  "seed of the superclass-word draw (default: the config's global seed)",
                  role="seed"),
            Param("missing_adjectives", "error", {"enum": ["error", "nouns_only"]},
                  "a corpus without adjectives (no conjugated labels): fail, or keep nouns only"),
            MISSING_GT,
        ),  # fmt: skip
        input_keys=(POSITIVES_OF,),
        needs=frozenset({"conjugated_labels"}),
        # The end-to-end tests' corpus is a word list: no adjectives to conjugate.
        small={"missing_adjectives": "nouns_only"},
    ),
)
