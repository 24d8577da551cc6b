"""Tools for tests and benchmarks that ship with the package (not run in production)."""
