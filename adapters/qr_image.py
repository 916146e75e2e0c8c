"""QR code images of a checkout's payment link, with the qrcode library.

SVG for the page (sharp at any size), PNG for anything that wants a
bitmap; the PNG writer is pypng, so Pillow is not needed.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage

# NOTE(qr): level M survives a smudged or partly covered screen and keeps
# a bizpayurl (about 180 characters) small enough to scan from a phone.
_ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
_BORDER = 4  # modules of quiet zone; scanners need at least 4.


def _code(content: str) -> qrcode.QRCode:
    if not content:
        raise ValueError("nothing to encode")
    code = qrcode.QRCode(
        error_correction=_ERROR_CORRECTION, box_size=10, border=_BORDER
    )
    code.add_data(content)
    code.make(fit=True)
    return code


def qr_svg(content: str) -> bytes:
    """Render ``content`` as an SVG document (UTF-8)."""
    image = _code(content).make_image(image_factory=SvgPathImage)
    data: bytes = image.to_string(encoding="UTF-8")
    return data


def qr_png(content: str) -> bytes:
    """Render ``content`` as a black-on-white PNG."""
    image = _code(content).make_image(image_factory=PyPNGImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()
