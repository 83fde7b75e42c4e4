"""The typed stack configuration: the only place raw Pulumi config is read.

Every key a stack file may hold is declared once, in `sections.py`; `checks.py` holds the checks that
cross sections, `sizing.py` the formulas validation and manifests share, `files.py` the one YAML loader
for hand-written files, and `loading.py` the ways in: `load()` (the running stack), `load_file()` (a
stack file, for the runbooks and tools) and `parse()`. A bad value stops the program with one
`ConfigError` that names the file, the key, the value and what is allowed -- before any resource is
declared, so a typo never becomes half a deployment.
"""

from components.config.base import (
    KUBERNETES_VERSIONS,
    NAMESPACE,
    REQUIRED_TAGS,
    STACK_CONFIG_DIR,
    TTFT_BUCKETS,
    ConfigError,
    region_code,
)
from components.config.drift import Drift, DriftFeature, DriftMonitor, EmbeddingDrift
from components.config.loading import load, load_file, parse, stack_file_config
from components.config.rollout import Rollout, RolloutMetric, ShadowGates
from components.config.sections import (
    Alerting,
    Availability,
    Canary,
    Cluster,
    Database,
    DevicePlugin,
    Failover,
    FailoverHealthCheck,
    FeatureStore,
    Freshness,
    GpuPool,
    IndexConfig,
    Model,
    Network,
    PolicyEnforcement,
    Redis,
    Regions,
    Registry,
    RegistryRef,
    Release,
    RequestLogs,
    Resources,
    Retrieval,
    Serving,
    Shadow,
    Slo,
    Standby,
    Startup,
    Sticky,
    SystemPool,
    TimeToFirstToken,
    Tools,
)
from components.config.sizing import (
    NODE_IMAGES_GIB,
    ReplicaShare,
    model_cache_gib,
    replica_resources,
    replica_share,
    rollout_surge,
)
from components.config.stack import StackConfig

__all__ = [
    "Drift", "DriftFeature", "DriftMonitor", "EmbeddingDrift", "Rollout", "RolloutMetric", "ShadowGates", "KUBERNETES_VERSIONS",
    "NAMESPACE", "NODE_IMAGES_GIB", "REQUIRED_TAGS", "STACK_CONFIG_DIR", "TTFT_BUCKETS", "Alerting", "Availability",
    "Canary", "Cluster", "ConfigError", "Database", "DevicePlugin", "Failover", "FailoverHealthCheck", "FeatureStore",
    "Freshness", "GpuPool", "IndexConfig", "Model", "Network", "PolicyEnforcement", "Redis", "Regions", "Registry",
    "RegistryRef", "Release", "ReplicaShare", "RequestLogs", "Resources", "Retrieval", "Serving", "Shadow", "Slo",
    "Standby", "StackConfig", "Startup", "Sticky", "SystemPool", "TimeToFirstToken", "Tools", "load", "load_file",
    "model_cache_gib", "parse", "region_code", "replica_resources", "replica_share", "rollout_surge",
    "stack_file_config",
]
