"""Predicted customer value (BG/NBD, Gamma-Gamma) and learned item-to-item
recommendations, fitted per store."""
