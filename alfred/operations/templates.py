"""Message templates of a tenant's WABA: list them, and submit one for Meta's review.

`python -m alfred templates list|create`. Meta reviews a new template (PENDING) and announces
the verdict as a `message_template_status_update` webhook, which reaches «alfred-ingest» as an
event of that name (APPROVED or REJECTED, with the reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alfred.config import Tenant

CATEGORIES = ("UTILITY", "MARKETING", "AUTHENTICATION")
NAME = re.compile(r"^[a-z0-9_]{1,512}$")
# {{1}}, {{2}}… in a body need an example each for review.
PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


class TemplateRefused(ValueError):
    """The template cannot be submitted as asked; the message says why."""


@dataclass(frozen=True)
class TemplateRow:
    """One template as `templates list` shows it."""

    name: str
    language: str
    status: str
    category: str
    id: str


def list_templates(graph, tenant: Tenant) -> list[TemplateRow]:
    """Return the tenant's templates, sorted by name and language."""
    if not tenant.waba_id:
        raise TemplateRefused(f"tenant {tenant.tenant_id!r} has no waba_id in ALFRED_TENANTS")
    rows = [
        TemplateRow(
            name=str(t.get("name", "")),
            language=str(t.get("language", "")),
            status=str(t.get("status", "")),
            category=str(t.get("category", "")),
            id=str(t.get("id", "")),
        )
        for t in graph.list_templates(tenant.waba_id, tenant.token)
    ]
    return sorted(rows, key=lambda row: (row.name, row.language))


def template_body(
    name: str, language: str, category: str, body: str, examples: list[str] | None = None
) -> dict:
    """Build the Cloud API's template object with one BODY component; refuse what Meta would."""
    category = category.upper()
    if not NAME.match(name):
        raise TemplateRefused(f"name {name!r}: lowercase letters, digits and _ only")
    if category not in CATEGORIES:
        raise TemplateRefused(f"category {category!r}: one of {', '.join(CATEGORIES)}")
    if not body.strip():
        raise TemplateRefused("the body text is empty")
    if len(body) > 1024:
        raise TemplateRefused(f"the body is {len(body)} characters; Meta allows 1024")
    numbers = sorted({int(n) for n in PLACEHOLDER.findall(body)})
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        raise TemplateRefused(f"placeholders must be {{{{1}}}}..{{{{n}}}} in order, got {numbers}")
    component: dict = {"type": "BODY", "text": body}
    if numbers:
        examples = examples or []
        if len(examples) != len(numbers):
            raise TemplateRefused(
                f"the body has {len(numbers)} placeholder(s): give as many --example values"
            )
        component["example"] = {"body_text": [examples]}
    return {
        "name": name,
        "language": language,
        "category": category,
        "parameter_format": "POSITIONAL",
        "components": [component],
    }


def create_template(graph, tenant: Tenant, template: dict) -> dict:
    """Submit a template for review; return Meta's answer (id, status, category)."""
    if not tenant.waba_id:
        raise TemplateRefused(f"tenant {tenant.tenant_id!r} has no waba_id in ALFRED_TENANTS")
    return graph.create_template(tenant.waba_id, tenant.token, template)
