"""Networks: event module, image module, shared layers, configs, checkpoint I/O."""
