"""Test fakes."""
