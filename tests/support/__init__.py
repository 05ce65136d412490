"""Test support: fixtures, doubles and helpers shared by the suites.

Plain modules, imported by tests and conftest files; none of it is product
code and none of it is collected as tests.
"""
