"""Conversions between weight-decay conventions."""
