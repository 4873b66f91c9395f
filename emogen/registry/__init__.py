"""The MLflow model registry: the generator as a pyfunc model, and the champion gate."""
