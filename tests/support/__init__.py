"""Helpers shared by the tests and the benchmarks: images, model folders, a real server."""
