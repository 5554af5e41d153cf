"""Small helpers shared across the package."""

from .io import atomic_path

__all__ = ["atomic_path"]
