"""Helpers shared by the tests: tiny models and inputs, servers, the browser driver, scratch repos."""
