"""Training code for the local classifiers (the moderation model's heads); used by scripts/, never by the server."""
