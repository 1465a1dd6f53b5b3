"""The response-propensity model: who is likely to apply after a letter.

One small module per job: ``features`` (the feature list and the frame built from warehouse
tables only), ``train`` (fit, score, evaluate, serialize: pure and deterministic), ``versions``
(every version the months allow, its metrics and the promotion rule) and ``assets``
(``ml/response_model`` and ``ml/propensity_scores``). See docs/outreach.md, "Response model".
"""
