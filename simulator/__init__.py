"""A local stand-in for WeChat Pay's side of the v2 protocol.

``state`` holds the rules and the state machine (no I/O), ``messages``
writes WeChat's wire formats, ``api`` answers WeChat's merchant API paths,
``control`` is the payer's JSON control API, ``delivery`` posts notifies and
mode-1 callbacks, ``app`` wires them together and ``commands`` is the
``wxpay simulator`` CLI.
"""
