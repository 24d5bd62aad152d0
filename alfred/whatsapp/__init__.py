"""The Meta boundary: Graph client, error codes, signatures, payload parsing. No Flask."""
