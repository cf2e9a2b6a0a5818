"""The dealer protocol (additive shares, a trusted dealer's correlated randomness): see
mpc.protocols.dealer.protocol."""
