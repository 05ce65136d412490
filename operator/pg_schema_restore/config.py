"""Settings of every entry point: which provider and executor, artifacts,
audit, Jobs. The operator reads them from the environment the Helm chart
sets (`from_env`); the CLI and the demo build them (`wiring` uses them).

Spec defaults (source, temporaryDatabase, artifactsLocation, …) come from
`PGSR_SPEC_DEFAULTS` (JSON), so the minimal SchemaRestore is exactly the
seed's input: database, schemas, restoreTime or snapshotId.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .engine.sources import SourcePolicy


def _merge(defaults: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class OperatorConfig:
    max_concurrent: int = 4
    provider: str = "aws"                      # aws | local
    executor: str = "job"                      # job | subprocess
    job_image: str = "pg-schema-restore/ddl-job:latest"
    # Where Jobs and their connection Secrets live: the operator's namespace,
    # never a SchemaRestore's (tenants must not read production credentials).
    # Empty: the namespace the operator runs in (its service account's).
    job_namespace: str = ""
    job_service_account: str = ""
    job_resources: dict[str, Any] = field(default_factory=lambda: {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"}})
    job_deadline_seconds: int = 6 * 3600
    # How often a running step's Job is read. Steps last minutes; tests on a
    # local control plane shrink it so they wait on work, not on the poll.
    job_poll_seconds: float = 1.0
    # Live progress (DataCopy, DMS full load) writes the status at most this often.
    progress_seconds: float = 5.0
    # A finished restore whose cleanup failed is retried after this many
    # seconds, doubling up to an hour, until nothing is left behind.
    cleanup_retry_seconds: int = 60
    spec_defaults: dict[str, Any] = field(default_factory=dict)
    artifacts_root: str = ""
    # S3 artifacts: encryption (AES256 or aws:kms [+ key id]) and the account
    # that must own the bucket. Read by the data plane from the same
    # PGSR_ARTIFACTS_* variables (ddl_job/artifacts.py).
    artifacts_sse: str = "AES256"
    artifacts_kms_key_id: str = ""
    artifacts_bucket_owner: str = ""
    audit_table: str = ""
    dms_secrets_role_arn: str = ""             # IAM role DMS assumes to read secrets
    metrics_port: int = 9090
    # Who may restore what (engine/sources.py): {name: {dbIdentifier,
    # secretArn, region, namespaces, databases, schemas}}; raw ids in a
    # SchemaRestore only when allow_raw_sources is on.
    sources: dict[str, Any] = field(default_factory=dict)
    allow_raw_sources: bool = False
    # `engine: stepfunctions`: the deployed state machine (stepfunctions/template.yaml),
    # how often its execution's history is read, and the waits it is started with
    # ({"seconds": poll interval, "maxPolls": bound}; {} = the state machine's defaults).
    state_machine_arn: str = ""
    sfn_poll_seconds: float = 5.0
    sfn_waits: dict[str, Any] = field(default_factory=dict)
    # `local` provider (demo and tests): genuine PITR from a WAL archive
    local_base_backup: str = ""
    local_wal_archive: str = ""
    local_production_secret: str = "production"
    local_workdir: str = ""
    local_secrets_dir: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "OperatorConfig":
        env = dict(os.environ if env is None else env)
        config = cls()
        for name, kind in cls.__annotations__.items():
            key = "PGSR_" + name.upper()
            if key not in env:
                continue
            raw = env[key]
            if kind == "int":
                setattr(config, name, int(raw))
            elif kind == "bool":
                setattr(config, name, raw.strip().lower() in ("1", "true", "yes"))
            elif kind == "float":
                setattr(config, name, float(raw))
            elif kind.startswith("dict"):
                setattr(config, name, json.loads(raw))
            else:
                setattr(config, name, raw)
        return config

    def effective_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The CR's spec with operator defaults filled in (the CR wins)."""
        return _merge(self.spec_defaults, dict(spec))

    @property
    def source_policy(self) -> SourcePolicy:
        return SourcePolicy.from_dict(self.sources, self.allow_raw_sources)

    def spec_for(self, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec a SchemaRestore of `namespace` runs: defaults filled in, its
        source resolved from the declared ones (SourceNotAllowed otherwise)."""
        return self.source_policy.resolve(namespace, dict(spec), self.effective_spec(spec))
