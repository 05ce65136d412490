"""Where data-plane steps run: a local subprocess (CLI, demo, tests) or a
Kubernetes Job (the operator); `result` reads a step's outcome the same way
for both. An ECS task executor (Step Functions engine) belongs here too."""
