"""Tests of the runtime client: real processes against a recording Runtime API server."""
