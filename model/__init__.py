"""lmscope model layer: loading, backends, inspection, generation, training, export."""
