"""The security target's parts: serving as shipped (a key ring, a token, the audit log) and the
alternating rounds it is measured in, combined into one result."""

from __future__ import annotations

from pathlib import Path

UNLIMITED_RATE = "1000000"  # the bench's one subject must not be refused by the per-subject limit

SECURITY_OFF = {"TEXTCLF_AUTH": "false", "TEXTCLF_AUDIT": "false"}


def secure_env(workdir: Path) -> tuple[dict[str, str], str]:
    """A key ring, a token and the env for serving as shipped: every request's token verified,
    the per-subject rate limit checked, an audit line written."""
    from auth.keys import init_ring, load_ring
    from auth.tokens import TokenService
    from textclf.core.settings import Settings

    folder = workdir / "auth"
    init_ring(folder)
    ring = load_ring(folder)
    defaults = Settings()
    tokens = TokenService(
        lambda: ring,
        issuer=defaults.token_issuer,
        audience=defaults.token_audience,
        algorithm=ring.active.alg,
        ttl_s=6 * 3600,  # outlives any benchmark run
    )
    env = {
        "TEXTCLF_AUTH": "true",
        "TEXTCLF_AUDIT": "true",
        "TEXTCLF_AUTH_DIR": str(folder),
        "TEXTCLF_AUDIT_DIR": str(workdir / "audit"),
        "TEXTCLF_RATE_LIMIT_RPS": UNLIMITED_RATE,
        "TEXTCLF_RATE_LIMIT_BURST": UNLIMITED_RATE,
    }
    return env, f"Bearer {tokens.issue('bench', ['classify']).token}"


def combine_rounds(rounds: list[dict]) -> dict:
    """Several load runs of one target as one: throughput over the total time, the median round's
    percentiles, every request and error counted."""
    total_s = sum(r["duration_s"] for r in rounds)
    requests = sum(r["requests"] for r in rounds)
    ok_texts = sum(r["texts_per_s"] * r["duration_s"] for r in rounds)

    def median(key: str) -> float:
        values = sorted(r[key] for r in rounds)
        return values[len(values) // 2]

    statuses: dict[str, int] = {}
    for r in rounds:
        for code, count in r.get("statuses", {}).items():
            statuses[code] = statuses.get(code, 0) + count
    combined = {
        "texts_per_s": round(ok_texts / total_s, 1) if total_s else 0.0,
        "requests_per_s": round(requests / total_s, 1) if total_s else 0.0,
        "p50_ms": median("p50_ms"),
        "p95_ms": median("p95_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max(r["max_ms"] for r in rounds),
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
        "duration_s": total_s,
        "texts_per_request": rounds[0]["texts_per_request"],
        "statuses": statuses,
        "rounds": [r["texts_per_s"] for r in rounds],
    }
    timed = [r for r in rounds if r.get("server_cpu_us_per_request") is not None and r["requests"]]
    if timed:  # CPU per request over all rounds, each weighted by its requests
        weighted = sum(r["server_cpu_us_per_request"] * r["requests"] for r in timed)
        combined["server_cpu_us_per_request"] = round(weighted / sum(r["requests"] for r in timed), 1)
    return combined
