"""The PII lifecycle: personal data 30 days hot, 90 days in cold archives, then anonymised.

service.py runs it per tenant (CLI and beat alike); tables.py and entries.py know what each
hot store holds and how it is anonymised; archive.py writes and verifies the cold archives;
pseudonym.py turns phone numbers and user ids into keyed hashes. See docs/privacy.md.
"""
