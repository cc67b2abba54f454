"""Process-wide tuning that the served application applies."""

from __future__ import annotations

import gc

from service.app import create_app
from service.config import Settings
from service.runtime import GC_YOUNG_THRESHOLD


async def test_the_served_app_collects_cyclic_garbage_less_often(settings: Settings) -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, saved[1], saved[2])
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, saved[1], saved[2])
            assert gc.isenabled()
    finally:
        gc.set_threshold(*saved)
