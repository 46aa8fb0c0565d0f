"""The media plane: rtpengine control, supervision, recordings."""
