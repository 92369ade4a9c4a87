"""Training recipes, one module per model family (``coffea-ad train RECIPE``).

The modules live in the top-level ``training/`` folder of the repository; the wheel ships them
here (see :mod:`coffea_ad._checkout` for how a source checkout finds them). The long physics
validations that use them are in the top-level ``studies/`` folder, which is not shipped.
"""

from coffea_ad._checkout import extend_from_checkout

extend_from_checkout(__path__, __file__, "training")
