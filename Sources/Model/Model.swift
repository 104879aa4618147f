// Model: placeholder until the model core lands.
