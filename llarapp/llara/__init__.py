"""LLaRA: a causal LM ranks K labelled candidates whose items mix title tokens with one
token carrying the projected behaviour (graph) vector. See :mod:`llarapp.llara.model`."""
