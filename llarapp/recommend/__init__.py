"""``llarapp recommend``: recommendations for a file of playlists, offline."""
