"""A local stand-in for Meta's WhatsApp Cloud API, with callbacks and injected faults."""

from __future__ import annotations

import logging

from aiohttp import web

from alfred.simulator import business, control, graph_api, media, templates, tokens, users
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.faults import FaultConfig
from alfred.simulator.runtime import SIM, Simulator

__all__ = ["FaultConfig", "SimulatorConfig", "create_app", "run_simulator"]
log = logging.getLogger(__name__)


def create_app(config: SimulatorConfig) -> web.Application:
    """Build the simulator's aiohttp application."""
    app = web.Application(client_max_size=110 * 1024 * 1024)  # media uploads up to 100 MB
    sim = Simulator(config)
    app[SIM] = sim

    async def lifecycle(_: web.Application):
        await sim.webhooks.start()
        yield
        await sim.webhooks.close()

    app.cleanup_ctx.append(lifecycle)
    # Order matters: the catch-all GET /{version}/{media_id} comes last.
    control.add_routes(app)
    users.add_routes(app)
    media.add_routes(app)
    tokens.add_routes(app)
    graph_api.add_routes(app)
    templates.add_routes(app)
    business.add_routes(app, sim)
    media.add_lookup_routes(app)
    return app


def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve the simulator until interrupted (used by `python -m alfred simulator`)."""
    log.warning(
        "Cloud API simulator on http://%s:%d (tenants: %s; webhooks to %s)",
        host, port, ", ".join(sorted(config.tenants)), config.webhook_url,
    )  # fmt: skip
    web.run_app(create_app(config), host=host, port=port, access_log=None, print=None)
