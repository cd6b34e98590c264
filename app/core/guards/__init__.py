"""Checks that decide whether a prediction may be shown as a verdict at all."""
