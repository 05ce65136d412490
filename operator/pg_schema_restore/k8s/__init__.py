"""The operator: thin kopf glue. `handlers` (the kopf handlers: drive a
restore, delete it), `reporting` (status, Events, log), `status` (the status
derived from a record), `metrics`. The engine and its adapters come from
`wiring`; Jobs are run by `executors.job`."""
