"""Token generation and hashing, signed URLs, and the shared secret they rely on."""
