"""Build single fake Billwerk records, in the shapes the API sends.

The factory remembers the customers and contracts it made, so that every invoice and
order points at a real contract and that contract's customer. All randomness comes from
the one seeded `random.Random`, so a seed always yields the same records.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from billwerk_dagster.billwerk.endpoints import (
    CONTRACTS,
    CUSTOMERS,
    INVOICES,
    ORDERS,
    PRIMARY_KEY,
)
from billwerk_dagster.sandbox import pools
from billwerk_dagster.sandbox.formats import TICKS_PER_DAY, TICKS_PER_SECOND, format_ticks, money

Record = dict[str, Any]

# Field names the endpoint table already holds: the foreign keys and the nested lists.
assert INVOICES.references is not None and ORDERS.references is not None
CUSTOMER_ID = INVOICES.references[1]
CONTRACT_ID = ORDERS.references[1]
(PHASES,) = CONTRACTS.nested_lists
(ITEM_LIST,) = INVOICES.nested_lists
(LINE_ITEMS,) = ORDERS.nested_lists

_MINUTE = 60 * TICKS_PER_SECOND
_QUANTITIES = (1, 1, 1, 2, 3, 10)


@dataclass(frozen=True)
class CustomerRef:
    """What invoices copy from their customer."""

    record_id: str
    name: str
    sub_name: str | None
    address: dict[str, str] | None
    external_id: str
    debitor_account: str
    country: str


@dataclass(frozen=True)
class ContractRef:
    """What invoices and orders copy from their contract."""

    record_id: str
    customer: CustomerRef
    currency: str
    plan: int
    variant_id: str


class RecordFactory:
    """Makes customers, contracts, invoices and orders that reference each other."""

    def __init__(self, rng: random.Random, late_ticks: int) -> None:
        self.rng = rng
        # Records created from this tick on may carry the custom field added late.
        self.late_ticks = late_ticks
        self.customers: list[CustomerRef] = []
        self.contracts: list[ContractRef] = []
        self.invoice_number = 0
        self._midnights: dict[int, str] = {}
        self.plans = [
            (name, price, self._object_id(), self._object_id(), self._object_id())
            for name, price in pools.PLANS
        ]

    def make(self, name: str, record_id: str, ticks: int) -> Record:
        """A new record of endpoint `name`, created at `ticks`."""
        if name == CUSTOMERS.name:
            return self.customer(record_id, ticks)
        if name == CONTRACTS.name:
            return self.contract(record_id, ticks, None)
        if name == INVOICES.name:
            return self.invoice(record_id, ticks)
        if name == ORDERS.name:
            return self.order(record_id, ticks)
        msg = f"the sandbox has no endpoint {name!r}"
        raise KeyError(msg)

    def customer(self, record_id: str, ticks: int) -> Record:
        rng = self.rng
        country, language, locale, firsts, lasts, cities, streets = rng.choice(pools.REGIONS)
        first, last = rng.choice(firsts), rng.choice(lasts)
        number = len(self.customers) + 1
        is_company = rng.random() < 0.6

        company = None
        if is_company:
            word = rng.choice(pools.COMPANY_WORDS)
            if rng.random() < 0.1:
                word = f"{word} {rng.choice(pools.EMOJI)}"
            company = f"{word} {last} {rng.choice(pools.COMPANY_FORMS[country])}"
        address = None
        if rng.random() < 0.9:
            address = {
                "Street": rng.choice(streets),
                "HouseNumber": f"{rng.randrange(1, 200)}{rng.choice(('', '', 'a', 'b'))}",
                "PostalCode": f"{rng.randrange(1000, 99999):05d}",
                "City": rng.choice(cities),
                "Country": country,
            }

        ref = CustomerRef(
            record_id=record_id,
            name=company or f"{first} {last}",
            sub_name=f"{first} {last}" if company else None,
            address=address,
            external_id=f"EXT-{number:06d}",
            debitor_account=f"{10000 + number}",
            country=country,
        )
        self.customers.append(ref)

        record: Record = {
            PRIMARY_KEY: record_id,
            CUSTOMERS.created_field: format_ticks(ticks),
            "DeletedAt": None,
            "IsLocked": rng.random() < 0.03,
            "CustomerName": ref.name,
            "CustomerSubName": ref.sub_name,
            "ExternalCustomerId": ref.external_id,
            "DebitorAccount": ref.debitor_account,
            "CompanyName": company,
            "FirstName": first,
            "LastName": last,
            "Language": language,
            "VatId": f"{country}{rng.randrange(10**8, 10**9)}" if company else None,
            "EmailAddress": f"kunde{number}@example.com",
            "Tag": rng.choice(("", "VIP", "Wiederverkäufer", "partenaire", None)),
            "Address": address,
            "Locale": locale,
            "CustomFields": self._custom_fields(ticks),
            "DefaultBearerMedium": rng.choice(pools.BEARER_MEDIA),
            "CustomerType": "Business" if company else "Consumer",
            "Hidden": rng.random() < 0.02,
        }

        # Some records leave fields out instead of sending null, as real accounts do.
        if rng.random() < 0.04:
            record["DeletedAt"] = format_ticks(ticks + rng.randrange(TICKS_PER_DAY * 30))
        for field in ("CustomerSubName", "VatId", "Tag", "Locale"):
            if rng.random() < 0.15:
                del record[field]
        return record

    def contract(self, record_id: str, ticks: int, customer: int | None) -> Record:
        rng = self.rng
        owner = self.customers[rng.randrange(len(self.customers)) if customer is None else customer]
        plan = rng.randrange(len(self.plans))
        _, _, plan_id, group_id, variant_id = self.plans[plan]
        ref = ContractRef(
            record_id=record_id,
            customer=owner,
            currency=pools.CURRENCIES[owner.country],
            plan=plan,
            variant_id=variant_id,
        )
        self.contracts.append(ref)

        phases = []
        phase_start = ticks
        for index in range(rng.randint(1, 3)):
            phases.append(
                {
                    "Type": pools.PHASE_TYPES[0] if index else rng.choice(pools.PHASE_TYPES),
                    "Start": format_ticks(phase_start),
                    "PlanVariantId": variant_id,
                    "PlanId": plan_id,
                    "Quantity": rng.choice((1, 1, 1, 5, 25)),
                }
            )
            phase_start += rng.randrange(1, 120) * TICKS_PER_DAY
        ended = rng.random() < 0.2

        return {
            PRIMARY_KEY: record_id,
            "PlanId": plan_id,
            "PlanVariantId": variant_id,
            "PlanGroupId": group_id,
            CUSTOMER_ID: owner.record_id,
            "LifecycleStatus": "Ended" if ended else rng.choice(pools.LIFECYCLE_STATUSES),
            "CustomerName": owner.name,
            PHASES: phases,
            "Balance": money(rng.choice((0, 0, 0, -rng.randrange(1, 90000), rng.randrange(90000)))),
            "ReferenceCode": f"{rng.getrandbits(32):08X}",
            "Currency": ref.currency,
            "PaymentBearer": {
                "Type": rng.choice(("InvoicePayment", "CreditCard", "Debit")),
                "Holder": owner.sub_name or owner.name,
                "Country": owner.country,
            },
            "PaymentProvider": rng.choice(pools.PAYMENT_PROVIDERS),
            "BillingSuspended": rng.random() < 0.05,
            CONTRACTS.created_field: format_ticks(ticks),
            "EndDate": format_ticks(phase_start) if ended else None,
            "BilledUntil": format_ticks(phase_start),
            "LastBillingDate": format_ticks(phase_start - 30 * TICKS_PER_DAY),
            "NextBillingDate": format_ticks(phase_start + TICKS_PER_DAY),
            "Notes": rng.choice(("", "Rabatt laut Vertrag §4", "Client prioritaire ⭐", None)),
            "CustomFields": self._custom_fields(ticks),
        }

    def invoice(self, record_id: str, ticks: int) -> Record:
        rand = self.rng.random
        contract = self.contracts[int(rand() * len(self.contracts))]
        customer = contract.customer
        self.invoice_number += 1

        # Credit notes carry negative amounts; the sums hold either way.
        sign = -1 if rand() < 0.03 else 1
        vat_basis_points = pools.VAT_BASIS_POINTS[customer.country]
        items, net, vat = self._items(vat_basis_points, sign, 4)
        day_start = ticks - ticks % TICKS_PER_DAY

        record: Record = {
            PRIMARY_KEY: record_id,
            "InvoiceNumber": f"RE-{self.invoice_number:07d}",
            CUSTOMER_ID: customer.record_id,
            CONTRACT_ID: contract.record_id,
            INVOICES.created_field: format_ticks(ticks),
            "SentAt": format_ticks(ticks + 3 * _MINUTE) if rand() < 0.9 else None,
            "DueDate": self._midnight(day_start + 14 * TICKS_PER_DAY),
            "DocumentDate": self._midnight(day_start),
            "RecipientName": customer.name,
            "RecipientSubName": customer.sub_name,
            "RecipientAddress": customer.address,
            "Currency": contract.currency,
            "TotalNet": money(net),
            "TotalVat": money(vat),
            "TotalGross": money(net + vat),
            "IsInvoice": sign > 0,
            "ExternalCustomerId": customer.external_id,
            "DebitorAccount": customer.debitor_account,
            ITEM_LIST: items,
        }
        if rand() < 0.1:
            del record[ITEM_LIST]
        return record

    def order(self, record_id: str, ticks: int) -> Record:
        rng = self.rng
        contract = rng.choice(self.contracts)
        plan_name, _, plan_id, _, _ = self.plans[contract.plan]
        items, net, vat = self._items(pools.VAT_BASIS_POINTS[contract.customer.country], 1, 3)
        for item in items:
            del item["VatPercentage"]

        return {
            PRIMARY_KEY: record_id,
            CUSTOMER_ID: contract.customer.record_id,
            CONTRACT_ID: contract.record_id,
            ORDERS.created_field: format_ticks(ticks),
            "Status": rng.choice(pools.ORDER_STATUSES),
            "OrderType": rng.choice(pools.ORDER_TYPES),
            "PlanId": plan_id,
            "PlanVariantId": contract.variant_id,
            "PlanName": plan_name,
            "Currency": contract.currency,
            "Total": money(net),
            "TotalVat": money(vat),
            "TotalGross": money(net + vat),
            "IsTrial": rng.random() < 0.15,
            LINE_ITEMS: items,
            "CustomFields": self._custom_fields(ticks),
        }

    def _items(self, vat_basis_points: int, sign: int, most: int) -> tuple[list[Record], int, int]:
        """1 to `most` line items, with the net and VAT totals in cents."""
        # Indexing by random() is several times cheaper than choice() and randrange(),
        # which shows at 200,000 invoices.
        rand = self.rng.random
        words = pools.ITEM_WORDS
        vat_percentage = vat_basis_points / 100
        items: list[Record] = []
        net = vat = 0
        for _ in range(1 + int(rand() * most)):
            quantity = _QUANTITIES[int(rand() * len(_QUANTITIES))]
            price = sign * (50 + int(rand() * 60000))
            line = quantity * price
            net += line
            vat += round(line * vat_basis_points / 10000)
            items.append(
                {
                    "Description": words[int(rand() * len(words))],
                    "Quantity": quantity,
                    "PricePerUnit": money(price),
                    "TotalNet": money(line),
                    "VatPercentage": vat_percentage,
                }
            )
        return items, net, vat

    def _custom_fields(self, ticks: int) -> Record:
        rng = self.rng
        fields: Record = {}
        for key in rng.sample(pools.CUSTOM_FIELD_KEYS, rng.randint(0, 3)):
            fields[key] = rng.choice((f"K-{rng.randrange(1000)}", rng.randrange(100), True, None))
        if ticks >= self.late_ticks and rng.random() < 0.5:
            fields[pools.LATE_CUSTOM_FIELD_KEY] = "spät hinzugefügt"
        return fields

    def _midnight(self, ticks: int) -> str:
        # Many invoices share a day; formatting each midnight once saves real time.
        text = self._midnights.get(ticks)
        if text is None:
            text = self._midnights[ticks] = format_ticks(ticks)
        return text

    def _object_id(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"
