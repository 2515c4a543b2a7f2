"""Business logic per API area. Services never import HTTP code; they raise ``mistral_gateway.errors``."""
