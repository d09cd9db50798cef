"""converter: consumes `video` jobs, extracts the audio to MP3 with ffmpeg, publishes `mp3` messages."""
