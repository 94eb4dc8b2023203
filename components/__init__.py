"""KFP v2 components: one per stage, each a thin wrapper around the llarapp library."""
