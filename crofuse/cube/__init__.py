"""cube."""
