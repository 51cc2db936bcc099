"""Benchmarks and evaluation harnesses behind `ioc bench …`: each runs real parts on private services and returns
a JSON-ready result. They may import every part of the center but the command line (`ioc`)."""
