"""Sub-commands of ``wxpay``, one module per group."""
