"""The shipped search spaces, one module each."""
