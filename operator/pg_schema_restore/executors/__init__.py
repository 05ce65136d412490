"""Where data-plane steps run: a local subprocess (CLI, demo, tests); later a Kubernetes Job or an ECS task."""
