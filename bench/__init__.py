"""The benchmark harness: the project's materialization measured against a plain fetch.

`python -m bench.run` starts the local Billwerk sandbox, then alternates the bound (every
page the project reads, fetched with `requests` and nothing else) with the real
`dagster asset materialize` command, and reports the ratio. See `bench/README.md`.
"""
