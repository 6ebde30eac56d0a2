"""Security: OAuth2 + JWT, RBAC scopes, rate limits, the audit log and TLS.

AES sealing at rest lives in the kernel (textclf.core.crypto): the model store uses it too.
"""
