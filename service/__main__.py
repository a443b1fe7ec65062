"""`python -m service` / `abpn-serve`: read the ABPN_* settings and serve (`service.server`).

Nothing heavy is imported at module level, on purpose: the face workers are spawned, and a
spawned process re-runs the parent's main script as `__mp_main__` first. Under the `abpn-serve`
console script that script imports this module, so whatever it imported up front (uvicorn,
FastAPI, torch through the runtime) would load again in every face worker, for nothing.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Read the ABPN_* settings and serve until SIGTERM (exits with the reason when the
    settings are invalid)."""
    from pydantic import ValidationError

    from service.config import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"invalid ABPN_* settings:\n{exc}")
    from service.server import serve

    serve(settings)


if __name__ == "__main__":
    main()
