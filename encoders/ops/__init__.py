"""Fused and reference operators: selective scan, causal conv1d, RMSNorm."""
