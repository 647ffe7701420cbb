"""The workflow configuration: loading, validation and every start-up check (config/README.md).

:class:`WorkflowConfig` wraps the config dictionary and answers the questions the workflow's
input functions ask (which datasets an ID set uses, which plugin a label set names, ...), so
that the ``.smk`` files stay declarative and every check is unit-tested without Snakemake.
Errors are :class:`ConfigError` with the config key that is wrong and what to do.

Imports only the standard library, PyYAML, jsonschema and the plugin catalog: the Snakefile
uses this package when it is parsed.
"""

from clustermine.config.errors import ConfigError
from clustermine.config.loading import check_config_files, load_config_file, merge
from clustermine.config.schema import config_schema, plugin_branches, validate_config
from clustermine.config.workflow import WorkflowConfig, load_workflow_config

__all__ = [
    "ConfigError",
    "WorkflowConfig",
    "check_config_files",
    "config_schema",
    "load_config_file",
    "load_workflow_config",
    "merge",
    "plugin_branches",
    "validate_config",
]
