"""``emogen demo``: a local web page to generate images of emotions with a loaded pipeline."""
