"""`arnet serve`: the web dashboard (arnet.web) over an event store and training runs."""

from ..web.serve import run_serve

__all__ = ["run_serve"]
