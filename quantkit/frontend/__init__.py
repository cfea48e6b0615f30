"""Frontends: TF models → frozen graphs (capture) → quantkit IR (lowering)."""
