"""What every agent shares: the input normaliser, the networks (and their config keys), online/target pairs,
cross-device reductions, the off-policy config base and the plain weights format of ``export``."""
