"""ltr_operator: the kopf operator that reconciles LTRServing resources (ltrserving.dev/v1alpha1).

Layers (imports point down): handlers (kopf wiring) → reconcile (API calls) → builders/status
(pure dict → dict) → spec (parsing/typing) → constants. The operator never imports torch.
"""
