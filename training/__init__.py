"""Training and evaluation of the face feature extractor (EfficientNet-B0 + ArcFace on LFW)."""
