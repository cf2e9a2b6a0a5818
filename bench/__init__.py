"""Benchmarks built on mpc and nn (above the engine: mpc never imports this package).
`mpc bench` runs bench.workloads."""
