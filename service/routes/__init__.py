"""HTTP routes: thin, validation and HTTP only; the work happens in codecs and the batcher."""
