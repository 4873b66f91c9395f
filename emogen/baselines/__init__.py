"""The Table 1 baselines (docs/method.md "Baselines"): prompt, Textual Inversion and DreamBooth,
on EmoGen's base model, budget and generation settings (``emogen stage baseline@<method>``)."""
