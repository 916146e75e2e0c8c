"""Adapters: the technologies behind the domain's ports (lxml, SQLAlchemy,
urllib3, qrcode)."""
