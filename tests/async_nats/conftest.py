"""Fixtures for the JetStream backend's tests: a real nats-server per test."""

from tests.nats_server import nats_server  # noqa: F401 (a fixture)
