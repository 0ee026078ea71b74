"""The policy: per SMTP stage, an ordered table of named steps (pipeline.py) run by engine.py.

A step reads a :class:`~osfmilter.policy.context.Context` and returns a
refusal (osfmilter.replies) or ``None``; the steps that need the world ask
through the context's ports. The first refusal of a stage decides.
"""
