"""One forward and backward pass on a sample input: inputs, losses, gradients, signal propagation."""
