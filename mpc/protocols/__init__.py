"""Protocols on shares: each a function of a Context and this party's share arrays."""
