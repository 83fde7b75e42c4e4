"""Drift: what users ask, and the numbers their requests carry, against a versioned reference -- the statistics
(`stats`), the references (`reference`), the sliding windows (`window`), the monitor and its HTTP front."""
