"""Word lists of the synthetic MPD generator: genres, moods and name parts.

Each genre and mood has words that show up in playlist titles, track names and lyrics,
so that a playlist title carries real signal about its tracks.
"""

GENRES: dict[str, list[str]] = {
    "country": ["country", "honky tonk", "boots", "whiskey", "dirt road", "nashville"],
    "hip hop": ["rap", "hip hop", "bars", "trap", "flow", "hood"],
    "rock": ["rock", "classic rock", "guitar", "riffs", "garage", "grunge"],
    "pop": ["pop", "hits", "top 40", "radio", "bops", "charts"],
    "edm": ["edm", "house", "techno", "rave", "bass drop", "electro"],
    "jazz": ["jazz", "swing", "bebop", "smooth jazz", "saxophone", "blue note"],
    "classical": ["classical", "piano", "symphony", "orchestra", "sonata", "strings"],
    "indie": ["indie", "alternative", "lofi", "bedroom pop", "shoegaze", "dream"],
    "latin": ["latin", "reggaeton", "salsa", "fiesta", "bachata", "cumbia"],
    "metal": ["metal", "heavy", "thrash", "doom", "headbang", "shred"],
    "rnb": ["r&b", "soul", "slow jams", "groove", "neo soul", "motown"],
    "folk": ["folk", "acoustic", "campfire", "banjo", "americana", "bluegrass"],
}

MOODS: dict[str, list[str]] = {
    "workout": ["workout", "gym", "running", "cardio", "pump up"],
    "chill": ["chill", "relax", "mellow", "calm", "unwind"],
    "party": ["party", "turn up", "pregame", "dance", "club"],
    "sad": ["sad", "heartbreak", "tears", "feels", "lonely"],
    "happy": ["happy", "good vibes", "sunshine", "feel good", "smile"],
    "sleep": ["sleep", "bedtime", "dreams", "night", "lullaby"],
    "road trip": ["road trip", "drive", "highway", "cruise", "miles"],
    "study": ["study", "focus", "homework", "concentration", "reading"],
    "summer": ["summer", "beach", "pool", "vacation", "sun"],
}

TITLE_TEMPLATES = [
    "{genre}", "{mood}", "{genre} {mood}", "{mood} {genre}", "my {genre} playlist",
    "{genre} vibes", "{mood} mix", "{mood} songs", "best of {genre}", "{genre} {genre2}",
]
NOISE_TITLES = ["random", "stuff", "my playlist", "new playlist", "favorites", "misc",
                "songs", "music", "2017", "jams", "mix", "liked"]

NAME_WORDS = [
    "love", "heart", "night", "fire", "light", "rain", "gold", "river", "city", "stars",
    "dance", "dream", "ghost", "wild", "blue", "summer", "shadow", "home", "road", "echo",
    "paper", "ocean", "silver", "storm", "midnight", "forever", "diamond", "thunder", "sky",
    "sugar", "honey", "glass", "velvet", "neon", "desert", "winter", "memory", "secret",
]
FIRST_NAMES = ["jake", "luna", "miles", "ava", "kane", "zoe", "eli", "nina", "rex", "ivy",
               "omar", "lila", "theo", "maya", "cole", "rosa", "finn", "jade", "leo", "sky"]
LAST_PARTS = ["stone", "rivers", "hart", "vega", "cruz", "wolfe", "lane", "moon", "king",
              "fox", "reed", "bell", "west", "knight", "gray", "frost", "blake", "storm"]
BAND_NOUNS = ["kings", "wolves", "lights", "ghosts", "rebels", "echoes", "saints", "riders",
              "dreamers", "strangers", "lovers", "machines", "tigers", "shadows", "crowns"]
