"""The commands of operations: `doctor` and `templates list|create`."""

from __future__ import annotations

import argparse
import json
import sys


def _settings_and_graph():
    from alfred import runtime
    from alfred.whatsapp.graph import GraphClient

    settings = runtime.settings()
    return settings, GraphClient(settings.graph_api_url, settings.graph_api_version)


def _tenant(settings, tenant_id: str):
    tenant = settings.tenants.get(tenant_id)
    if tenant is None:
        known = ", ".join(sorted(settings.tenants)) or "none: set ALFRED_TENANTS"
        print(f"error: unknown tenant {tenant_id!r} (configured: {known})", file=sys.stderr)
    return tenant


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check each tenant's Meta setup and the services; exit 1 naming what is wrong."""
    from alfred import runtime
    from alfred.operations import doctor

    settings, graph = _settings_and_graph()
    checks = doctor.run(
        settings,
        graph,
        runtime.redis_client(),
        app_id=settings.meta_app_id,
        app_secret=settings.app_secrets[0] if settings.app_secrets else None,
        webhook_url=args.webhook_url,
    )
    for check in checks:
        print(check.line())
    failed = [f"{c.scope} {c.name}" for c in checks if not c.ok]
    if failed:
        print(f"doctor: {len(failed)} wrong: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print("doctor: all checks passed")
    return 0


def cmd_templates_list(args: argparse.Namespace) -> int:
    """List the tenant's message templates and their review status."""
    from alfred.operations.templates import TemplateRefused, list_templates

    settings, graph = _settings_and_graph()
    tenant = _tenant(settings, args.tenant)
    if tenant is None:
        return 2
    try:
        rows = list_templates(graph, tenant)
    except TemplateRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    widths = [max([len(h)] + [len(getattr(r, h)) for r in rows]) for h in _COLUMNS]
    print("  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths, strict=True)).rstrip())
    for row in rows:
        cells = [getattr(row, h) for h in _COLUMNS]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return 0


_COLUMNS = ("name", "language", "status", "category", "id")


def cmd_templates_create(args: argparse.Namespace) -> int:
    """Submit a template for Meta's review; the verdict arrives as a webhook."""
    from alfred.operations.templates import TemplateRefused, create_template, template_body

    settings, graph = _settings_and_graph()
    tenant = _tenant(settings, args.tenant)
    if tenant is None:
        return 2
    try:
        template = template_body(args.name, args.language, args.category, args.body, args.example)
        answer = create_template(graph, tenant, template)
    except TemplateRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dict(answer)))
    print(
        "submitted for review: Meta's verdict arrives as a message_template_status_update "
        "event in «alfred-ingest»"
    )
    return 0


def add_commands(sub) -> None:
    """Add `doctor` and `templates` to the command line's subparsers."""
    doctor = sub.add_parser("doctor", help=cmd_doctor.__doc__, description=cmd_doctor.__doc__)
    doctor.set_defaults(func=cmd_doctor)
    doctor.add_argument(
        "--webhook-url", help="our public /webhook URL (default: the local web port's)"
    )
    templates = sub.add_parser("templates", help="message templates: list, create")
    t_sub = templates.add_subparsers(metavar="ACTION", required=True)
    t_list = t_sub.add_parser("list", help=cmd_templates_list.__doc__)
    t_list.set_defaults(func=cmd_templates_list)
    t_create = t_sub.add_parser("create", help=cmd_templates_create.__doc__)
    t_create.set_defaults(func=cmd_templates_create)
    for p in (t_list, t_create):
        p.add_argument("--tenant", default="home", help="tenant id (default: home)")
    t_create.add_argument("--name", required=True, help="lowercase letters, digits and _")
    t_create.add_argument("--language", default="en_US", help="e.g. en_US (default)")
    t_create.add_argument(
        "--category", default="UTILITY", help="UTILITY, MARKETING, AUTHENTICATION"
    )
    t_create.add_argument("--body", required=True, help="the body text; {{1}}… for parameters")
    t_create.add_argument(
        "--example", action="append", help="an example value for each {{n}}, in order"
    )
