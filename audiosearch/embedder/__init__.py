"""The embedder service: Triton Inference Server hosting PANNs Cnn14 (`panns_cnn14`)."""
