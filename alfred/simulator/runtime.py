"""The running simulator's parts, reachable from every handler through the app."""

from __future__ import annotations

import time

from aiohttp import web

from alfred.config import Tenant
from alfred.simulator import errors
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.faults import Faults
from alfred.simulator.state import SimState, TokenInfo
from alfred.simulator.webhooks import WebhookDispatcher


class Simulator:
    """Config, memory, faults and the webhook dispatcher of one simulated Cloud API."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.state = SimState(config)
        self.faults = Faults(config.faults)
        self.by_phone: dict[str, Tenant] = {t.phone_number_id: t for t in config.tenants.values()}
        self.by_waba: dict[str, Tenant] = {
            t.waba_id: t for t in config.tenants.values() if t.waba_id
        }
        self.webhooks = WebhookDispatcher(config, self.state, lambda: self.faults)

    def reset(self) -> None:
        """Return to the configured starting point, faults included."""
        self.state.reset()
        self.faults = Faults(self.config.faults)
        self.webhooks.clear()


SIM = web.AppKey("simulator", Simulator)


def sim_of(request: web.Request) -> Simulator:
    """Return the simulator serving this request."""
    return request.app[SIM]


def bearer(request: web.Request) -> str | None:
    """Return the access token of a Graph call (Authorization header or access_token)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("access_token")


def auth_error(request: web.Request) -> web.Response:
    """Answer 190 as Graph does: expired for a token it knew, invalid otherwise."""
    if bearer(request) in sim_of(request).state.tokens:
        return errors.token_error("Error validating access token: Session has expired.")
    if bearer(request) is None:
        return errors.token_error("An active access token must be used to query this resource.")
    return errors.token_error()


def authorise(request: web.Request) -> TokenInfo | None:
    """Return the grants of the request's token when it is valid now."""
    return sim_of(request).state.token_for(bearer(request), time.time())
