"""The «alfred-outbox» bridge, a process of its own: outbox entries in, send_message tasks out."""
