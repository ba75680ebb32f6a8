"""The tools around the engine: the ``demandstream`` command line, the live demo, the shopper
simulator and the local development infrastructure (tansu broker, private redis-server).

They sit above ``stream``, ``training`` and ``insights`` and may import any of them; the engine
(``stream``) never imports from here.
"""
