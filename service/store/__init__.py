"""Stores behind the API: Redis (production) and a local model directory (embedded mode)."""
