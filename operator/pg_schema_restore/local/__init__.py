"""Local stand-ins for AWS: genuine PITR copies and secrets on this machine (demo, tests)."""
