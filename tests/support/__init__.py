"""Helpers shared by test packages: TLS material made for a test, threaded servers on 127.0.0.1."""
