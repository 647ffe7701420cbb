"""Where a model's weights come from, and the weight cache (docs/slurm.md, "Model weights").

``pretrained`` is an open_clip pretrained tag, a local checkpoint file, or none (random
weights) (:mod:`.kinds`). A tag's files (:mod:`.sources`: where open_clip gets them) are
fetched once, on a machine with internet access (:mod:`.fetching`: the workflow's local rule
``fetch_weights`` on the submit host, or ``clustermine fetch``), into a cache folder
(:mod:`.cache`: ``weights_cache`` in the config, default ``resources/weights``) laid out as
open_clip and huggingface_hub lay out theirs; jobs then load them from there with hub access
switched off (:mod:`.offline`), and a tag whose files are not there fails at once with one
message (:mod:`.messages`).

Importing this package is free of numpy and torch (the workflow asks it when it is parsed);
the functions that need open_clip or the hub import them when called.
"""

from clustermine.weights.cache import (
    DEFAULT_CACHE,
    cached_weights,
    marker_record,
    place_in_cache,
    read_marker,
    write_marker,
)
from clustermine.weights.errors import (
    TRACEBACK_ENV,
    WeightsError,
    WeightsMissing,
    WeightsUnreadable,
    error_cause,
)
from clustermine.weights.fetching import fetch
from clustermine.weights.kinds import (
    CHECKPOINT_SUFFIXES,
    is_local_checkpoint,
    is_pretrained_tag,
    is_random,
)
from clustermine.weights.messages import fetch_command, missing_message, short_reason
from clustermine.weights.offline import hub_cache, hub_is_offline, hub_offline, is_offline_error
from clustermine.weights.sources import (
    HF_SAFE_WEIGHTS_NAME,
    HF_WEIGHTS_NAME,
    WeightSource,
    pretrained_cfg,
    text_config_repo,
    tokenizer_repo,
    weight_source,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_CACHE",
    "HF_SAFE_WEIGHTS_NAME",
    "HF_WEIGHTS_NAME",
    "TRACEBACK_ENV",
    "WeightSource",
    "WeightsError",
    "WeightsMissing",
    "WeightsUnreadable",
    "cached_weights",
    "error_cause",
    "fetch",
    "fetch_command",
    "hub_cache",
    "hub_is_offline",
    "hub_offline",
    "is_local_checkpoint",
    "is_offline_error",
    "is_pretrained_tag",
    "is_random",
    "marker_record",
    "missing_message",
    "place_in_cache",
    "pretrained_cfg",
    "read_marker",
    "short_reason",
    "text_config_repo",
    "tokenizer_repo",
    "weight_source",
    "write_marker",
]
