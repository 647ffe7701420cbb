"""Clusterers (config ``clusterers.<slug>.method``) of the ID-train image embeddings
(docs/clustering.md). Every implementation is
``fit(embeddings, num_clusters, params, *, neighbors=None, device=None, budget_bytes=None)
-> ClusterResult``; the number of clusters C comes from the label set or the cluster sweep.
"""

from __future__ import annotations

from clustermine.catalog.plugin import Param, Plugin

COUNT = {"type": "integer", "minimum": 1}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
UNIT = {"type": "number", "minimum": 0, "maximum": 1}
SEED = Param("seed", 0, {"type": "integer"}, "seed (default: the config's global seed)",
             role="seed")

TEMI_PARAMS = (
    Param("heads", 50, COUNT, "H, clustering heads trained together"),
    Param("knn", 50, COUNT, "k of the nearest-neighbour graph pairs are drawn from",
          role="knn_k"),
    Param("knn_index", "exact", {"enum": ["exact", "ivf"]},
          "search of that graph: exact, or a faiss IVF index (approximate; its recall "
          "is measured and recorded)", role="knn_index"),
    Param("knn_nlist", None, {"type": ["integer", "null"], "minimum": 1},
          "IVF cells (null: 4·√N); only with knn_index ivf", role="knn_nlist"),
    Param("knn_nprobe", 16, COUNT, "IVF cells each query searches; only with knn_index ivf",
          role="knn_nprobe"),
    Param("epochs", 100, COUNT, "training epochs"),
    Param("batch_size", 512, {"type": "integer", "minimum": 2}, "pairs per step"),
    Param("lr", 1e-4, POSITIVE, "peak learning rate per 256 samples (linear scaling)"),
    Param(
        "min_lr",
        None,
        {"type": ["number", "null"], "minimum": 0},
        "final learning rate of the cosine decay per 256 samples; null keeps the peak",
    ),
    Param("warmup_epochs", 20, {"type": "integer", "minimum": 0}, "epochs of linear warm-up"),
    Param("weight_decay", 1e-4, {"type": "number", "minimum": 0}, "AdamW weight decay"),
    Param("teacher_momentum", 0.996, UNIT, "EMA momentum of the teacher (first step)"),
    Param(
        "final_teacher_momentum",
        None,
        {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "teacher momentum at the last step (cosine ramp); null keeps it constant",
    ),
    Param("student_temp", 0.1, POSITIVE, "student softmax temperature"),
    Param("teacher_temp", 0.1, POSITIVE, "teacher softmax temperature"),
    Param("beta", 0.6, POSITIVE, "β of the weighted PMI"),
    Param("prior_momentum", 0.9, UNIT, "EMA momentum of the cluster prior"),
    Param("hidden_dim", 512, COUNT, "hidden width of each head"),
    Param("bottleneck_dim", 256, COUNT, "bottleneck width of each head"),
    Param("freeze_last_layer_epochs", 1, {"type": "integer", "minimum": 0},
          "epochs the last layer stays fixed"),  # fmt: skip
    Param("zscore", True, {"type": "boolean"},
          "standardise every dimension (mean, N−1 std) before the heads"),  # fmt: skip
    Param("l2_normalize", False, {"type": "boolean"},
          "L2-normalise the (z-scored) rows before the heads; false feeds them as they are"),  # fmt: skip
    SEED,
)

KMEANS_PARAMS = (
    Param("metric", "cosine", {"enum": ["cosine", "euclidean"]},
          "cosine: spherical k-means; euclidean: Lloyd on raw rows"),  # fmt: skip
    Param("max_iter", 100, COUNT, "Lloyd iterations at most"),
    Param("tol", 1e-4, {"type": "number", "minimum": 0}, "stop below this relative gain"),
    Param("n_init", 1, COUNT, "independent seedings; the lowest inertia is kept"),
    Param("local_trials", None, {"type": ["integer", "null"], "minimum": 1},
          "candidates per greedy k-means++ step (null: 2 + ln C)"),  # fmt: skip
    Param("init_size", None, {"type": ["integer", "null"], "minimum": 1},
          "rows k-means++ and k-means‖ seed from (null: all up to max(100,000, 32·C))"),
    Param("init", "kmeans||", {"enum": ["kmeans++", "kmeans||", "random"]},
          "seeding: greedy k-means++, k-means‖ (a few rounds of parallel sampling, then "
          "k-means++ on the weighted samples) or C distinct random rows"),  # fmt: skip
    # A parameter, not a speed setting: the backends agree up to float rounding and their
    # handling of emptied clusters, and Lloyd's iterations can turn one rounding-level tie
    # into a different final clustering (docs/clustering.md, "Backends").
    Param("backend", "auto", {"enum": ["auto", "faiss", "torch"]},
          "who runs Lloyd's iterations: auto (faiss's k-means on the CPU when installed, "
          "else torch), faiss or torch"),  # fmt: skip
    SEED,
)

CLUSTERER_PLUGINS = (
    Plugin(
        "clusterer",
        "temi",
        "TEMI heads trained on kNN pairs; the best head's teacher assigns",
        "TEMI (Adaloglou et al., BMVC 2023)",
        "clustermine.clustering.temi:fit_temi",
        params=TEMI_PARAMS,
        needs=frozenset({"knn"}),
        small={"heads": 3, "knn": 5, "epochs": 3, "batch_size": 16, "warmup_epochs": 3},
    ),
    Plugin(
        "clusterer",
        "kmeans",
        "k-means‖ seeding and Lloyd iterations (spherical by default)",
        "Lloyd (1982); k-means++ (Arthur & Vassilvitskii, 2007); k-means‖ (Bahmani et al., "
        "VLDB 2012)",
        "clustermine.clustering.kmeans:fit_kmeans",
        params=KMEANS_PARAMS,
    ),
    Plugin(
        "clusterer",
        "language_assisted",
        "spherical k-means of [x̂, r(x)], r(x) the text retrieved from a label set's positives",
        "Peng et al., ICCV 2025 (GradNorm, language-assisted clustering)",
        "clustermine.clustering.language_assisted:fit_language_assisted",
        params=(
            Param("tau_r", 0.006, POSITIVE, "τ_r, temperature of the text retrieval"),
            *(p for p in KMEANS_PARAMS if p.name != "metric"),
        ),
        input_keys=(
            Param("names_from", None, {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                  "the label set whose positives are the filtered names (gradnorm)", True,
                  role="label_set"),
            Param("idset", None, {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                  "the ID set of that label set (default: the one whose train set is "
                  "clustered)", role="idset"),
        ),  # fmt: skip
        needs=frozenset({"label_set"}),
        # The joint rows [x̂, r(x)] are twice as wide as the embeddings.
        memory_copies=3,
        small={"tau_r": 0.05},
    ),
)
