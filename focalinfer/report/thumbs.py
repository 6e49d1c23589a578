"""Thumbnails of source images for the report (JPEG bytes), or None when the file is not here."""

from __future__ import annotations

import io
from pathlib import Path

SIZE = 136


def thumbnail(path: Path | None) -> bytes | None:
    if path is None or not path.is_file():
        return None
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            small = ImageOps.fit(image.convert("RGB"), (SIZE, SIZE), Image.Resampling.BICUBIC)
    except OSError:   # unreadable or not an image: the report says so instead of a picture
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
