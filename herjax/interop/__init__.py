"""Adapters to other libraries: ``herjax.interop.brax`` (a herjax env as a ``brax.envs.Env``)."""
