"""The stormd runtime: CLI, NATS intake, actors, timers, metrics."""

__version__ = "0.1.0"
