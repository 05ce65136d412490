"""Kubernetes face: SchemaRestore status, Job executor, kopf handlers."""
