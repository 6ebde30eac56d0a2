"""What the plain comparison servers share: the request body, a readiness route, a loopback runner."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field


class Body(BaseModel):
    texts: list[str] = Field(min_length=1)


def new_app(title: str) -> FastAPI:
    app = FastAPI(title=title)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def parse_args(description: str, source_help: str, **numbers: tuple[int, str]) -> argparse.Namespace:
    """`source --port N`, plus an integer option `--name` per keyword (default, help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help=source_help)
    parser.add_argument("--port", type=int, required=True)
    for name, (default, help_text) in numbers.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=help_text)
    return parser.parse_args()


def serve(app: FastAPI, port: int) -> None:
    """uvicorn with its defaults (uvloop/httptools when installed), access log off, loopback only."""
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
