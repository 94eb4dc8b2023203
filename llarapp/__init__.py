"""LLaRA++: cold-start music recommendation on the Spotify Million Playlist Dataset."""

__version__ = "0.1.0"
