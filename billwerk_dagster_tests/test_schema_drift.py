"""Schema drift: Billwerk accounts add custom fields, fields go missing, nested objects
arrive as null, and a field can change type. Loads go on, new columns appear, and a value
of a new type lands in dlt's variant column without touching the existing column."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billwerk_dagster.billwerk.endpoints import INVOICES
from billwerk_dagster.sandbox import Sandbox, SandboxData
from billwerk_dagster_tests.conftest import Project

DAY = "2024-01-10"
CREATED = f"{DAY}T10:00:00.0000000Z"


def _columns(project: Project, table: str) -> dict[str, str]:
    return dict(
        project.rows(  # type: ignore[arg-type]
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'billwerk' and table_name = ?",
            [table],
        )
    )


def _drifted(sandbox_data: SandboxData, **changes: Any) -> dict[str, Any]:
    template = next(r for r in sandbox_data.records(INVOICES.name) if r.get("ItemList"))
    record = {**template, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def test_new_missing_null_and_retyped_fields_load_without_corrupting_columns(
    project: Project, sandbox: Sandbox, sandbox_data: SandboxData
) -> None:
    project.load_days(DAY)
    before = _columns(project, "invoices")
    assert before["total_net"].startswith("DECIMAL")

    added = [
        sandbox.insert(INVOICES.name, _drifted(sandbox_data, BrandNewField="neu"), CREATED),
        sandbox.insert(INVOICES.name, _drifted(sandbox_data, RecipientName=...), CREATED),
        sandbox.insert(INVOICES.name, _drifted(sandbox_data, RecipientAddress=None), CREATED),
        sandbox.insert(
            INVOICES.name,
            _drifted(sandbox_data, CustomFields={"KostenstelleNeu": "K-42"}),
            CREATED,
        ),
        sandbox.insert(INVOICES.name, _drifted(sandbox_data, TotalNet="n/a"), CREATED),
    ]
    project.load_days(DAY)

    after = _columns(project, "invoices")
    assert after["brand_new_field"] == "VARCHAR"
    assert after["custom_fields__kostenstelle_neu"] == "VARCHAR"
    # The retyped value goes to a variant column; the DECIMAL column keeps its type.
    assert after["total_net"] == before["total_net"]
    assert after["total_net__v_text"] == "VARCHAR"
    rows = {
        row[0]: row[1:]
        for row in project.rows(
            "select id, brand_new_field, recipient_name, recipient_address__city, "
            "custom_fields__kostenstelle_neu, total_net, total_net__v_text from billwerk.invoices"
        )
    }
    new_field, missing, null_address, custom, retyped = (rows[r["Id"]] for r in added)
    assert new_field[0] == "neu"
    assert missing[1] is None
    assert null_address[2] is None
    assert custom[3] == "K-42"
    assert retyped[4] is None and retyped[5] == "n/a"
    assert isinstance(new_field[4], Decimal)
    assert set(project.ids(INVOICES.name)) == sandbox.ids(
        INVOICES.name, f"{DAY}T00:00:00Z", f"{DAY}T23:59:59.9999999Z"
    )
