"""Security: OAuth2 + JWT, RBAC scopes, audit log and encryption at rest (see the issues on security)."""
