"""Learning from names: the classifier and its file format, calibration, versions, review, label issues, tags, explanations."""
