"""What an agent asks the caller to pay, as the API and the control socket accept it."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..recording.pcimask import find_card_numbers


class PaymentOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(gt=0, le=1_000_000, max_digits=9, decimal_places=2,
                            description="amount to charge, at most two decimals (a string keeps it exact)")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    reference: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$", description="the order or invoice it pays")

    @field_validator("reference")
    @classmethod
    def _no_card_number(cls, value: str) -> str:
        if find_card_numbers(value):  # it would end up in events and the audit trail
            raise ValueError("must not contain a card number")
        return value
