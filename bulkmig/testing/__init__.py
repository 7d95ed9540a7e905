"""Test helpers that ship with the package (so the soak and other suites can reuse them): nothing here is
imported by the stages themselves."""
