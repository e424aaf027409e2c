"""The one table of facts about Billwerk's list endpoints.

The dlt source, the Dagster assets, the local sandbox and the tests all read this
table; no endpoint name, key or cursor field is spelled anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIMARY_KEY = "Id"
PAGE_SIZE_PARAM = "take"
CURSOR_PARAM = "from"
DATE_FROM_PARAM = "dateFrom"
DATE_TO_PARAM = "dateTo"
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Endpoint:
    """One Billwerk list endpoint and how it is loaded.

    `created_field` is the record's creation timestamp. For windowed endpoints the API
    filters it with `dateFrom` / `dateTo` (both inclusive) and the Dagster asset is
    partitioned by its day; snapshot endpoints are listed whole at every sync.
    """

    name: str
    path: str
    created_field: str
    windowed: bool
    nested_lists: tuple[str, ...] = ()
    # The parent whose primary key this endpoint's records point to, as
    # (endpoint name, foreign-key field): the data's foreign keys are the asset deps.
    references: tuple[str, str] | None = None


CUSTOMERS = Endpoint(name="customers", path="customers", created_field="CreatedAt", windowed=False)
CONTRACTS = Endpoint(
    name="contracts",
    path="contracts",
    created_field="StartDate",
    windowed=False,
    nested_lists=("Phases",),
)
INVOICES = Endpoint(
    name="invoices",
    path="invoices",
    created_field="Created",
    windowed=True,
    nested_lists=("ItemList",),
    references=("customers", "CustomerId"),
)
ORDERS = Endpoint(
    name="orders",
    path="orders",
    created_field="CreatedAt",
    windowed=True,
    nested_lists=("LineItems",),
    references=("contracts", "ContractId"),
)

ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (CUSTOMERS, CONTRACTS, INVOICES, ORDERS)}
SNAPSHOT_ENDPOINTS = tuple(e for e in ENDPOINTS.values() if not e.windowed)
WINDOWED_ENDPOINTS = tuple(e for e in ENDPOINTS.values() if e.windowed)
