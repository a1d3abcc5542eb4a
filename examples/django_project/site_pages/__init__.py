"""The example project's pages."""
