"""Batch inference through the BentoML client; not part of the Bento.

It runs beside a server, on the caller's machine, so it lives outside `bentos/` and is never
imported by the service.
"""
