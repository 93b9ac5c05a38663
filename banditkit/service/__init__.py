"""The decision service: a FastAPI app over a store (memory or SQLite), sharing the Bandit with the library.

Needs the ``service`` extra: ``pip install 'banditkit[service]'``.

    from banditkit.service import Settings, create_app
    app = create_app(Settings(store="sqlite:///./banditkit.db"))
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("the decision service needs its extra: pip install 'banditkit[service]'") from error

from .app import create_app
from .config import Settings
from .engine import Engine

__all__ = ["Engine", "Settings", "create_app"]
