"""Online evaluation: replay held-out playlists against a live server (``llarapp simulate``)
and compare live requests with training (``llarapp drift report``)."""
