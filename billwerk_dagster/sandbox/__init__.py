"""A local fake Billwerk: the token endpoint and list API over real HTTP, for tests.

`generate()` builds a deterministic account with the edge cases real accounts have;
`Sandbox` serves it on 127.0.0.1 with switchable faults and request statistics;
`SandboxClient` drives a sandbox started in another process with
`python -m billwerk_dagster.sandbox`.
"""

from billwerk_dagster.sandbox.control import SandboxClient
from billwerk_dagster.sandbox.faults import Faults, Rule
from billwerk_dagster.sandbox.generate import Edges, SandboxData, generate
from billwerk_dagster.sandbox.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox
from billwerk_dagster.sandbox.stats import TOKEN, LoggedRequest, Stats

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "TOKEN",
    "Edges",
    "Faults",
    "LoggedRequest",
    "Rule",
    "Sandbox",
    "SandboxClient",
    "SandboxData",
    "Stats",
    "generate",
]
