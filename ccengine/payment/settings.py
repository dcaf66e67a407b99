"""Secure-payment settings (the ``payment:`` section of the engine settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PaymentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    connector: Literal["lab"] = Field("lab", description="payment gateway; 'lab' approves Luhn-valid, "
                                                         "unexpired cards and returns a random token")
    max_seconds: float = Field(120.0, ge=15, le=600, description="longest mask window: the caller is "
                                                                 "returned to the agent (unmasked) after it")
    attempts: int = Field(3, ge=1, le=5, description="tries per entry (card, expiry, code) before giving up")
    first_digit_timeout: float = Field(10.0, gt=0, le=60, description="seconds to start an entry after its prompt")
    inter_digit_timeout: float = Field(5.0, gt=0, le=30, description="seconds between two digits of an entry")
    authorize_timeout: float = Field(20.0, gt=0, le=120, description="seconds the connector has to answer")
