"""Fixtures: a real simulator on a free port, and a real webhook receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import requests

from alfred.config import Secret, Tenant
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.testing import SimulatorHandle, WebhookRecorder, running_simulator

HOME = Tenant("home", "1110001", "2220001", Secret("token-home"), mps=80)
BIZ = Tenant("biz", "1110002", "2220002", Secret("token-biz"), mps=80)
APP_SECRET = "app-secret-ü"
USER = "+15551230001"
TOKEN = HOME.token.reveal()


class Client:
    """requests against one simulator, with the tenant's bearer token by default."""

    def __init__(self, handle: SimulatorHandle):
        self.handle = handle
        self.url = handle.url
        self.session = requests.Session()

    def send(
        self, body: dict, *, phone: str = HOME.phone_number_id, token: str | None = TOKEN, **kwargs
    ) -> requests.Response:
        """POST a message body (messaging_product added)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"messaging_product": "whatsapp", **body}
        return self.session.post(
            f"{self.url}/v25.0/{phone}/messages", json=body, headers=headers, **kwargs
        )

    def text(
        self, to: str = USER, body: str = "hello", token: str | None = TOKEN, **extra
    ) -> requests.Response:
        """Send a text message; extra keys go into the body."""
        return self.send({"to": to, "type": "text", "text": {"body": body}, **extra}, token=token)

    def inbound(self, **spec) -> dict:
        """Have a simulated user write to a tenant."""
        r = self.session.post(f"{self.url}/_sim/inbound", json={"tenant": "home", **spec})
        assert r.status_code == 200, r.text
        return r.json()

    def stats(self) -> dict:
        """Read /_sim/stats."""
        return self.session.get(f"{self.url}/_sim/stats").json()


@pytest.fixture
def recorder() -> Iterator[WebhookRecorder]:
    """A webhook receiver capturing every callback."""
    with WebhookRecorder() as rec:
        yield rec


@pytest.fixture
def make_sim(recorder: WebhookRecorder) -> Iterator[Callable[..., Client]]:
    """Start a simulator whose config overrides the test defaults with the given keywords."""
    handles: list[SimulatorHandle] = []
    contexts = []

    def make(**overrides) -> Client:
        config = SimulatorConfig(
            tenants={"home": HOME, "biz": BIZ},
            webhook_url=recorder.url,
            app_secret=APP_SECRET,
            status_delay_s=0.02,
            webhook_retry_schedule=(0.05, 0.05),
            template_approval_delay_s=0.05,
        )
        config = replace(config, **overrides)
        ctx = running_simulator(config)
        handles.append(ctx.__enter__())
        contexts.append(ctx)
        return Client(handles[-1])

    yield make
    for ctx in contexts:
        ctx.__exit__(None, None, None)


@pytest.fixture
def sim(make_sim: Callable[..., Client]) -> Client:
    """A simulator with the default test config."""
    return make_sim()
