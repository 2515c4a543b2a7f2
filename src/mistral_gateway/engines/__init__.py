"""Inference engines behind small protocols (text generation, embeddings), with deterministic fakes."""
