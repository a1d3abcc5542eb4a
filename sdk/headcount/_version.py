"""The SDK version, in its own module so private modules can import it without cycles."""

__version__ = "0.1.0"
