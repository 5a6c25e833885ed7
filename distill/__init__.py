"""Distil a slow, accurate retrieval teacher into a fast dual-encoder student on Ray."""

__version__ = "0.1.0"
