"""Request and response models per API area (pydantic v2). No HTTP imports here: the client reuses them."""
