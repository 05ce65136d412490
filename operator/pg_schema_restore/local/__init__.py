"""Local stand-ins for AWS (demo, tests, the operator's `local` provider):
genuine PITR copies of a local cluster (`provider`, `cluster`), secrets and
artifacts in directories."""
