"""notification: consumes `mp3` messages and emails the user that the MP3 is ready or the conversion failed."""
