"""Periodic upkeep run by celery beat."""
