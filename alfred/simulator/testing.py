"""Run the simulator in a background thread for tests, and record the webhooks it sends."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp import web

from alfred.simulator import create_app
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.faults import FaultConfig, Faults
from alfred.simulator.runtime import SIM, Simulator


class StateView:
    """Thread-safe reads (and a few writes) of a running simulator's state."""

    def __init__(self, sim: Simulator, loop: asyncio.AbstractEventLoop):
        self._sim, self._loop = sim, loop

    def call(self, fn: Callable[[Simulator], Any], timeout: float = 5.0) -> Any:
        """Run fn(simulator) on the simulator's loop and return its result."""

        async def run() -> Any:
            return fn(self._sim)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stats(self) -> dict:
        """Return the same counters as GET /_sim/stats."""
        return self.call(lambda sim: {**sim.state.snapshot_stats(), **sim.webhooks.pending()})

    def messages(self, tenant: str | None = None, limit: int = 100) -> list[dict]:
        """Return the latest accepted messages (shallow copies), oldest first."""

        def pick(sim: Simulator) -> list[dict]:
            found = [dict(m) for m in sim.state.messages if tenant in (None, m["tenant"])]
            return found[-limit:]

        return self.call(pick)

    def refusals(self) -> list[dict]:
        """Return the sends refused on the request (copies), oldest first."""
        return self.call(lambda sim: [dict(r) for r in sim.state.refusals])

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault settings."""
        self.call(lambda sim: setattr(sim, "faults", Faults(faults)))


class SimulatorHandle:
    """A simulator serving on 127.0.0.1 from its own thread and event loop."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.url = ""
        self.state: StateView
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="cloud-api-simulator", daemon=True)

    def start(self) -> SimulatorHandle:
        """Start serving and wait until the port is bound."""
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError("the simulator did not start") from self._error
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            app = create_app(self.config)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            self.state = StateView(app[SIM], self._loop)
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@contextmanager
def running_simulator(config: SimulatorConfig) -> Iterator[SimulatorHandle]:
    """Serve a simulator on a free port for the duration of the block."""
    handle = SimulatorHandle(config).start()
    try:
        yield handle
    finally:
        handle.stop()


class WebhookRecorder:
    """A tiny real webhook receiver that keeps every POST and can answer with errors."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0  # answer this many POSTs with `fail_status`
        self.fail_status = 500
        self._cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with recorder._cond:
                    status = 200
                    if recorder.fail_next > 0:
                        recorder.fail_next -= 1
                        status = recorder.fail_status
                    recorder.received.append((dict(self.headers), body))
                    recorder._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> WebhookRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def payloads(self) -> list[dict]:
        """Return every received body, parsed."""
        with self._cond:
            return [json.loads(body) for _, body in self.received]

    def statuses(self) -> list[dict]:
        """Return every `statuses[]` item received, in arrival order."""
        return [
            s
            for p in self.payloads()
            for e in p["entry"]
            for c in e["changes"]
            for s in c["value"].get("statuses", [])
        ]

    def wait_for(self, predicate: Callable[[WebhookRecorder], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate(self) holds; return whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            with self._cond:
                self._cond.wait(0.05)
        return predicate(self)
