"""Tools for the demo, tests and benchmarks that ship with the package (not run in
production): the Procfile runner, the chaos controller, a local OTLP collector."""
