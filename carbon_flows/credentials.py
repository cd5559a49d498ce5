"""Prefect blocks holding carbon-intensity API credentials; each builds the matching core provider.

Why blocks: a token lives once in the Prefect server (encrypted, shown masked), flows name the block instead of
carrying the secret in parameters, logs or artifacts. `SecretStr` keeps it out of every repr.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.registry import make_source


class CarbonCredentials(Block, ABC):
    """Base of the credential blocks (an interface: never registered itself); subclasses name their provider."""

    provider: ClassVar[str]

    base_url: str | None = Field(
        default=None, description="API root; leave empty for the provider's public endpoint."
    )

    @abstractmethod
    def provider_kwargs(self) -> dict[str, Any]:
        """The secrets and options the provider builder takes (secrets unwrapped only here)."""

    def build_source(self) -> IntensitySource:
        """The live provider for these credentials, with the core's cache and fallback wiring."""
        return make_source(self.provider, base_url=self.base_url, **self.provider_kwargs())


class ElectricityMapsCredentials(CarbonCredentials):
    """Electricity Maps v3 API token (sent as the `auth-token` header)."""

    _block_type_name = "Electricity Maps Credentials"
    _description = "API token for the Electricity Maps v3 carbon-intensity API."
    provider: ClassVar[str] = "electricitymaps"

    api_token: SecretStr = Field(description="Electricity Maps API token.")

    def provider_kwargs(self) -> dict[str, Any]:
        return {"token": self.api_token.get_secret_value()}


class WattTimeCredentials(CarbonCredentials):
    """WattTime v3 login (exchanged for a short-lived bearer token by the provider)."""

    _block_type_name = "WattTime Credentials"
    _description = "Username and password for the WattTime v3 marginal-emissions API."
    provider: ClassVar[str] = "watttime"

    username: str = Field(description="WattTime username.")
    password: SecretStr = Field(description="WattTime password.")

    def provider_kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password.get_secret_value()}


BLOCK_TYPES: tuple[type[CarbonCredentials], ...] = (ElectricityMapsCredentials, WattTimeCredentials)
