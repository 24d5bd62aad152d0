"""The WSGI entry point: `gunicorn wsgi:app`."""

from alfred import create_app

app = create_app()
