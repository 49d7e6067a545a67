"""Tingfeng (听风): online public-opinion monitoring and response."""

__version__ = "0.1.0"
