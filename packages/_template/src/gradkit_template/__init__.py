"""gradkit-template: the skeleton of a gradkit plugin."""

from .config import ScaleConfig
from .transform import GradScale

__all__ = ["GradScale", "ScaleConfig"]
