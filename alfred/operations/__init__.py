"""Operations: the health of the tenants and the services (metrics, alerts, doctor)."""
