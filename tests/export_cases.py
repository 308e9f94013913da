"""Export cases shared by the Python-module and JSON export tests: one space, four enqueued settings."""

# a two-group space with every rule the export tests cover
SPACE = {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma", "alpha2beta1"], "gamma": [0.25, 1.0],
         "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "flat", "same"], "canonize": [True, False],
         "base": ["lrp", "excitation_backprop"]}

# every rule of the space on a conv group and on the classifier, every first-layer rule, both canonizations,
# both base composites (Excitation Backprop's gradient through activations and batch norms, plain and canonized)
SETTINGS = [
    {"canonize": True, "first_layer": "zbox", "base": "lrp", "conv1.rule": "gamma", "conv1.gamma": 0.25,
     "conv2.rule": "alpha2beta1", "classifier.rule": "epsilon", "classifier.epsilon": 0.1},
    {"canonize": False, "first_layer": "flat", "base": "excitation_backprop", "conv1.rule": "zplus", "conv2.rule": "gamma", "conv2.gamma": 1.0,
     "classifier.rule": "epsilon", "classifier.epsilon": 1e-6},
    {"canonize": True, "first_layer": "same", "base": "excitation_backprop", "conv1.rule": "epsilon", "conv1.epsilon": 0.1, "conv2.rule": "zplus",
     "classifier.rule": "gamma", "classifier.gamma": 0.25},
    {"canonize": False, "first_layer": "zbox", "base": "lrp", "conv1.rule": "alpha2beta1", "conv2.rule": "epsilon",
     "conv2.epsilon": 1e-6, "classifier.rule": "alpha2beta1"},
]
