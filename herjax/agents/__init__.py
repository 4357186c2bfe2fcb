"""Agents: pure functions of arrays behind two interfaces (``herjax.agents.base``).

    agents/base.py      OffPolicyAgent, OnPolicyAgent
    agents/common/      normaliser (+ preprocess), networks, online/target pairs, the off-policy config base,
                        the plain weights format of ``agent.export``
    agents/ddpg/ td3/ sac/ ppo/   each: config.py, losses.py, agent.py (a make_<alg> factory)
"""
