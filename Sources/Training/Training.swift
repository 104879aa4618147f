// Training: placeholder until the trainer lands.
