"""Flask blueprints of the web process."""
