"""The `stepfunctions` engine: the seven phases as an AWS Step Functions state
machine (`stepfunctions/restore.asl.json`, written by `definition`), the
Lambda that runs the engine's own code for it (`function`), and the ECS entry
point of data-plane steps (`ecs_step`)."""
