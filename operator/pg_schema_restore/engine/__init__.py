"""The restore engine: the typed spec, the resumable record, seven idempotent
phases and the runner, talking to the world only through `ports`; no kopf,
no Kubernetes, no boto3 here."""
