"""mnistbench: a benchmark and reproducibility harness for MNIST classifiers (MLP, CNN, ViT)."""
