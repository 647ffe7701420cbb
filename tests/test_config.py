"""Config loading and the start-up checks (clustermine.config), and config isolation: a user's
config file replaces the embedded demo config instead of being merged into it."""

from __future__ import annotations

import shutil

import pytest
from helpers import REPO, planned_jobs, snakemake, write_config

from clustermine.config import (
    ConfigError,
    WorkflowConfig,
    load_config_file,
    load_workflow_config,
    validate_config,
)

SCHEMA_FILE = REPO / "workflow/schemas/config.schema.yaml"


def config(**sections) -> dict:
    base = {
        "models": {"m": {"arch": "clustermine-tiny", "pretrained": None}},
        "datasets": {
            "train": {"type": "imagefolder", "root": "data/train"},
            "test": {"type": "imagefolder", "root": "data/test"},
            "ood": {"type": "imagefolder", "root": "data/ood"},
        },
        "corpora": {"words": {"type": "wordlist", "path": "words.txt"}},
        "clusterers": {"km": {"method": "kmeans"}},
        "label_sets": {"gt": {"miner": "gt"}, "cm": {"miner": "clustermine", "clusterer": "km",
                                                     "C": 4}},
        "methods": {"mcm": {"score": "mcm", "labels": "gt"},
                    "cm": {"score": "eq1", "labels": "cm"}},
        "idsets": {"tiny": {"train": "train", "test": ["test"], "corpus": "words",
                            "benchmarks": ["ood"]}},
    }
    for key, value in sections.items():
        base[key] = value
    return base


def checked(cfg: dict, class_names=True) -> WorkflowConfig:
    validate_config(cfg, SCHEMA_FILE)
    workflow_config = WorkflowConfig(cfg, lambda spec: class_names)
    workflow_config.check()
    return workflow_config


def test_a_valid_config_answers_the_workflow_questions():
    cfg = checked(config(seed=3))
    assert cfg.idset_datasets("tiny") == ["train", "test", "ood"]
    assert cfg.idset_methods("tiny") == ["mcm", "cm"] and cfg.idset_models("tiny") == ["m"]
    plugin, params, inputs = cfg.label_set("cm")
    assert plugin.name == "clustermine" and params == {} and inputs == {"clusterer": "km", "C": 4}
    assert cfg.clusterer("km")[1] == {"seed": 3}  # the global seed, unless the clusterer sets one
    assert cfg.knn_graph("km") is None
    assert cfg.main_idset() == "tiny" and cfg.main_model() == "m"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["idsets"]["tiny"].update(benchmarks=["odd"]),
         "idsets.tiny.benchmarks names dataset 'odd', which is not declared under datasets"),
        (lambda c: c["idsets"]["tiny"].update(models=["vit"]),
         "idsets.tiny.models names model 'vit', which is not declared under models"),
        (lambda c: c["corpora"]["words"].update(add_class_names_of=["imagenet"]),
         "corpora.words.add_class_names_of names dataset 'imagenet'"),
        (lambda c: c["idsets"]["tiny"].update(methods=["mcm", "neglabel"]),
         "idsets.tiny.methods names method 'neglabel'"),
        (lambda c: c["methods"]["mcm"].update(labels="gtt"),
         "methods.mcm.labels names label set 'gtt'"),
        (lambda c: c["label_sets"]["cm"].update(clusterer="temi"),
         "label_sets.cm.clusterer names clusterer 'temi'"),
        (lambda c: c["label_sets"].update(pm={"miner": "posmine", "match_positives_of": "pm"}),
         "label_sets.pm.match_positives_of names itself"),
        (lambda c: c.update(report={"main_model": "vit"}), "report.main_model 'vit'"),
        (lambda c: c["idsets"]["tiny"].update(cluster_sweep={"temi": [2, 4]}),
         "idsets.tiny.cluster_sweep names clusterer 'temi'"),
        (lambda c: c["idsets"]["tiny"].pop("test"),
         "idsets.tiny runs methods but names no ID test set"),
        (lambda c: c["clusterers"].update(la={"method": "language_assisted", "names_from": "x"}),
         "clusterers.la.names_from names label set 'x'"),
        (lambda c: c["clusterers"].update(la={"method": "language_assisted", "names_from": "cm",
                                               "idset": "other"}),
         "clusterers.la.idset names idset 'other'"),
        (lambda c: (c["clusterers"].update(la={"method": "language_assisted", "names_from": "cm"}),
                    c["label_sets"]["cm"].update(clusterer="la")),
         "clusterers.la.names_from 'cm' is mined from clusters of 'la' itself"),
    ],
)
def test_every_reference_is_checked_at_start(edit, message):
    cfg = config()
    edit(cfg)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        checked(cfg)


def test_an_empty_test_list_is_refused_by_the_schema():
    cfg = config()
    cfg["idsets"]["tiny"]["test"] = []
    with pytest.raises(ConfigError, match=r"idsets\.tiny\.test: \[\] should be non-empty"):
        checked(cfg)


def test_questions_about_label_sets_follow_the_roles_of_the_catalog():
    cfg = config()
    cfg["label_sets"].update(
        pm={"miner": "posmine", "match_positives_of": "cm"},
        db={"miner": "debiased", "positives_of": "pm", "k1": 7},
    )
    cfg = checked(cfg)
    assert cfg.label_set_clustering("cm") == ("km", 4) and cfg.label_set_clustering("gt") is None
    assert cfg.label_set_density_k("db") == 7 and cfg.label_set_density_k("cm") is None
    cfg.label_sets["db"].pop("k1")
    assert cfg.label_set_density_k("db") == 100  # the catalog's default
    assert cfg.label_set_references("pm") == {"match_positives_of": "cm"}
    assert cfg.label_set_chain("db") == ["db", "pm", "cm"]
    assert cfg.clusterings("tiny") == [("km", 4)]


def test_entries_are_read_in_one_key_order_whatever_the_yaml_order():
    a, b = config(), config()
    b["datasets"]["train"] = {"root": "data/train", "type": "imagefolder"}
    b["methods"]["cm"] = {"labels": "cm", "score": "eq1"}
    ca, cb = checked(a), checked(b)
    assert repr(ca.datasets) == repr(cb.datasets) and repr(ca.methods) == repr(cb.methods)
    assert list(cb.methods) == ["mcm", "cm"]  # the entries keep their order (the report's)
    assert repr(ca.report_settings()) == repr(cb.report_settings())


def test_yaml_merge_keys_work_and_a_written_key_overrides_the_merged_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &base\n  arch: clustermine-tiny\n  batch_size: 8\n"
                    "models:\n  m:\n    <<: *base\n    batch_size: 16\n")
    assert load_config_file(path)["models"]["m"] == {"arch": "clustermine-tiny", "batch_size": 16}
    path.write_text("models:\n  m:\n    <<: {arch: a}\n    arch: b\n    arch: c\n")
    with pytest.raises(ConfigError, match="key 'arch' is given twice"):
        load_config_file(path)


def test_ground_truth_label_sets_need_class_names():
    with pytest.raises(ConfigError, match=r"uses label set 'gt' \(miner gt\), which needs"):
        checked(config(), class_names=False)
    cfg = config()
    cfg["idsets"]["tiny"]["methods"] = ["cm"]
    checked(cfg, class_names=False)  # label-free: fine


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\nmodels:\n  m: {arch: a}\n  m: {arch: b}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: key 'm' is given twice .*line 3"):
        load_config_file(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_file(path)


def test_data_root_joins_relative_paths(tmp_path):
    path = write_config(tmp_path, config(data_root="/data"))
    cfg = load_workflow_config([path], SCHEMA_FILE, class_names_of=lambda spec: True)
    assert cfg.datasets["train"]["root"] == "/data/data/train"
    assert cfg.corpora["words"]["path"] == "/data/words.txt"


def user_workdir(tmp_path):
    """A working directory like the repository's: the embedded demo config in config/."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


@pytest.mark.slow
def test_a_user_config_replaces_the_demo_config(tmp_path):
    workdir = user_workdir(tmp_path)
    for d in ("train", "test", "ood"):
        (workdir / "data" / d / "c").mkdir(parents=True)
        (workdir / "data" / d / "c" / "x.png").write_bytes(b"")
    (workdir / "words.txt").write_text("dog\ncat\n")
    write_config(workdir, config(), "user.yaml")
    out = snakemake(workdir, "-n", "--cores", "1", configfiles=["user.yaml"], check=True)
    assert "demo" not in out.stdout + out.stderr
    jobs = planned_jobs(workdir, configfiles=["user.yaml"])
    assert jobs["embed_text"] == 1 and "train_demo_model" not in jobs
    assert jobs["evaluate"] == 2  # one model, two methods, one test set
    # Without --configfile the demo config is the config (as `make demo` runs it).
    demo = planned_jobs(workdir, configfiles=())
    assert demo["train_demo_model"] == 1 and demo["demo_summary"] == 1


def test_a_misspelt_parameter_of_covers_base_is_named_at_start():
    """CoVer's base_params are checked against its base score's parameters by the schema,
    before any job runs (and by the catalog for callers of the library)."""
    from clustermine import catalog

    good = {"score": "cover", "labels": "gt", "base": "energy", "base_params": {"temperature": 2}}
    checked(config(methods={"c": good}))
    checked(config(methods={"c": {"score": "cover", "labels": "gt",
                                  "base_params": {"temperature": 2}}}))  # base: mcm (default)
    for entry, bad in [
        ({"base_params": {"temprature": 0.5}}, "temprature"),  # the default base, MCM
        ({"base": "eq1_grouped", "base_params": {"group": 3}}, "group"),
        ({"base": "energy", "base_params": {"temperature": "hot"}}, "hot"),
    ]:
        with pytest.raises(ConfigError, match=bad):
            checked(config(methods={"c": {"score": "cover", "labels": "gt", **entry}}))
        with pytest.raises(catalog.CatalogError, match=f"cover.*base_params.*{bad}"):
            catalog.score("cover").resolve({k: v for k, v in entry.items()})


@pytest.mark.parametrize(
    "deployment, message",
    [
        ({"idset": "other", "method": "cm", "images": ["test"]},
         "deployments.d.idset names idset 'other'"),
        ({"idset": "tiny", "method": "nope", "images": ["test"]},
         "deployments.d.method 'nope' is not a method of idset 'tiny'"),
        ({"idset": "tiny", "method": "cm", "images": ["tset"]},
         "deployments.d.images names dataset 'tset'"),
        ({"idset": "tiny", "method": "maha", "images": ["test"]},
         "deployments.d.method 'maha' .score mahalanobis. also needs train_embeddings"),
    ],
)  # fmt: skip
def test_a_deployment_names_a_detector_the_config_fits(deployment, message):
    methods = {"mcm": {"score": "mcm", "labels": "gt"}, "cm": {"score": "eq1", "labels": "cm"},
               "maha": {"score": "mahalanobis", "labels": "gt"}}  # fmt: skip
    good = {"idset": "tiny", "method": "cm", "images": ["test", "ood"], "guard_p": None}
    cfg = checked(config(methods=methods, deployments={"d": good}))
    assert cfg.deployment_settings("d") == {"seed": 0, "guard_p": None}
    with pytest.raises(ConfigError, match=message):
        checked(config(methods=methods, deployments={"d": deployment}))
    with pytest.raises(ConfigError, match="holdout"):
        checked(config(methods=methods, deployments={"d": {**good, "holdout": 1.5}}))
