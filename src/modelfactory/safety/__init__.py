"""Bounded primitives for untrusted input: file reads, JSON, globs, and text shown on a terminal."""
