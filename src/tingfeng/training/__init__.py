"""Training and evaluation of the built-in models from the labelled data in `../shared/data`."""
