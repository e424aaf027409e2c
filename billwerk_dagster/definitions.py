"""The code location: `dagster dev` and `dagster asset materialize -m` load `defs` here."""

from billwerk_dagster.orchestration.definitions import build_definitions

defs = build_definitions()
