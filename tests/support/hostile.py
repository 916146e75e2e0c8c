"""Hostile XML bodies of case C16, shared by every tier of tests."""

# An external entity that would read a local file into out_trade_no.
XXE_FILE = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM'
    b' "file:///etc/hostname">]><xml><return_code>SUCCESS</return_code>'
    b"<out_trade_no>&e;</out_trade_no><sign>X</sign></xml>"
)

# A DTD fetched from elsewhere (nothing listens on port 9).
EXTERNAL_DTD = (
    b'<?xml version="1.0"?>'
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">'
    b"<xml><a>1</a></xml>"
)


def billion_laughs(levels=10, fanout=10):
    """Nested entities: ``fanout ** levels`` copies of "lol" if expanded."""
    entities = ['<!ENTITY e0 "lol">']
    for level in range(1, levels):
        refs = f"&e{level - 1};" * fanout
        entities.append(f'<!ENTITY e{level} "{refs}">')
    return (
        '<?xml version="1.0"?><!DOCTYPE xml [' + "".join(entities) + "]>"
        "<xml><return_code>SUCCESS</return_code>"
        f"<out_trade_no>&e{levels - 1};</out_trade_no></xml>"
    ).encode()


# The C16 payloads every WeChat-facing URL must refuse, by name.
HOSTILE = {"xxe": XXE_FILE, "billion laughs": billion_laughs()}
