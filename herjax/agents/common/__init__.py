"""What every agent shares: the input normaliser, the networks, online/target pairs, cross-device reductions and
the off-policy config base."""
