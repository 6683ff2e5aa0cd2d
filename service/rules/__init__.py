"""Editorial rules: stored rules (schema, admin routes, file) and the engine that applies them."""
