"""A local HTTP server playing PagerDuty's Events API v2: records events, answers as told."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Serves POST /v2/enqueue on 127.0.0.1; `answers` are used in turn, then 202."""

    def __init__(self):
        self.events: list[dict] = []
        self.answers: deque[int] = deque()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                status = receiver.answers.popleft() if receiver.answers else 202
                receiver.events.append({**event, "_answered": status})
                if status == 202 and event.get("routing_key") and event.get("event_action"):
                    reply = {
                        "status": "success",
                        "message": "Event processed",
                        "dedup_key": event.get("dedup_key"),
                    }
                else:
                    status = 400 if status == 202 else status
                    reply = {"status": "invalid event", "message": "Event object is invalid"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v2/enqueue"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self, action: str | None = None) -> list[tuple[str, str]]:
        """Return (action, dedup_key) of the events answered 202, in order."""
        return [
            (e["event_action"], e["dedup_key"])
            for e in self.events
            if e["_answered"] == 202 and (action is None or e["event_action"] == action)
        ]
