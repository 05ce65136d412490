"""AWS adapters of the engine's ports, one module per service concern:
`rds` (temporary database), `secrets` (Secrets Manager), `audit` (DynamoDB),
`s3` (artifacts), `dms` (data copy), wired together by `wiring.py`; `session`
holds the shared boto3 plumbing (retry config, polling, tags). Adapters never
import each other."""
