"""Helpers shared by the test folders: the architecture checker, required components."""
