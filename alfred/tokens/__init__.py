"""Per-tenant Graph API tokens: encrypted at rest, replaceable at run time."""
