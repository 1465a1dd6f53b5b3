"""Reading provenance back: why a number changed, and reproducing a past number."""
