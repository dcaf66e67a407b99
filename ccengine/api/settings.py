"""API settings (the ``api:`` section of the engine settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = Field("127.0.0.1", description="address the HTTP(S) server binds")
    tls: bool = Field(True, description="serve HTTPS (TLS 1.2+ only); plain HTTP only for local tests")
    cert_file: Path | None = Field(None, description="PEM certificate; a self-signed one is generated if unset")
    key_file: Path | None = Field(None, description="PEM private key matching cert_file")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="larger request bodies are refused (413)")
    rate_per_second: float = Field(20.0, gt=0, description="sustained requests per second per client")
    rate_burst: int = Field(60, ge=1, description="requests a client may send in a burst")
    lockout_failures: int = Field(5, ge=1, description="failed logins in a row that lock an account")
    lockout_seconds: float = Field(900.0, gt=0, description="how long a locked account stays locked")
    session_seconds: float = Field(8 * 3600.0, gt=0, description="lifetime of a token issued by /login")
    campaigns_dir: Path = Field(Path("campaigns"), description="folder of the campaign files the API may start, "
                                "by name (nothing outside it: the files are reviewed configuration); relative "
                                "to the settings file's folder")
    approval_seconds: float = Field(3600.0, gt=0, description="time a second person has to approve a request")
    webhook_attempts: int = Field(6, ge=1, description="deliveries tried before a webhook event is dead-lettered")
    webhook_backoff: float = Field(1.0, gt=0, description="first retry delay in seconds; doubles each attempt")
