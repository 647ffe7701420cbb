from clustermine.compute import loader_workers
from clustermine.datasets import read_index
from clustermine.encode import encode_images
from clustermine.h5io import write_features
from clustermine.logs import setup_logging
from clustermine.models import load_model

log = setup_logging(snakemake.log[0])
wc, params, res = snakemake.wildcards, snakemake.params, snakemake.resources
# Rule embed_features: local patch features ("local") or a corrupted view ("views/<view>").
features = params.get("features", "global")
view = features.partition("/")[2] if features.startswith("views/") else None
index = read_index(snakemake.input.index)
start, stop = index.shard(int(wc.shard), int(wc.nshards))
log.info(
    "dataset %s shard %s/%s: rows %d-%d, %s features",
    wc.dataset, wc.shard, wc.nshards, start, stop, features,
)  # fmt: skip
loaded = load_model(
    params.model["arch"],
    params.model["pretrained"],
    cache_dir=res.weights_cache,
    slug=wc.model,
    checkpoint_copy=next(iter(snakemake.input.checkpoint), None),  # a staged copy, if any
)
log.info("model %s (%s) on %s", loaded.arch, loaded.pretrained, loaded.device)
workers = loader_workers(res.loader_workers, snakemake.threads)
log.info("%d image-decoding workers (encode.num_workers %s, %d threads given)", workers,
         res.loader_workers, snakemake.threads)  # fmt: skip
data = encode_images(
    loaded,
    index,
    start,
    stop,
    batch_size=res.batch_size,
    num_workers=workers,
    precision=params.model["precision"],
    # Several shards: the allowance holds for the whole dataset, checked when they are merged.
    max_unreadable_fraction=float(res.max_unreadable) if int(wc.nshards) == 1 else 1.0,
    **({} if params.max_pixels is None else {"max_pixels": params.max_pixels}),
    features="local" if features == "local" else "global",
    view=view,
    seed=params.get("seed", 0),
)
data.attrs.update(loaded.attrs())
data.attrs.update(
    dataset=wc.dataset,
    model=wc.model,
    storage_dtype=params.storage,  # image embeddings and views; local features are float16
    shard=int(wc.shard),
    dataset_params=index.params,
    root=index.root,
)
write_features(snakemake.output[0], data)
