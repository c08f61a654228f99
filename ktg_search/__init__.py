"""ktg-search: knowledge-transfer-graph search for multi-generator GANs on Ray Tune."""
