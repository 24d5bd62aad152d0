"""Inbound media: fetched from Meta with the tenant's token, checked, kept in the blob store."""
