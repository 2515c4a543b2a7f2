"""mistral-gateway: the Mistral AI platform API, self-hosted, in two dialects (native and LowCodeAPI)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
