"""`manage.py imgproxy_warm STORE --preset thumb,card`: every existing file of a store rendered
for some presets into the tiers of the proxy this site warms through (serving.current(): the
tiers a separate `imgproxy serve` shares, when nothing in the site serves), so files saved
before `lifecycle.connect` are hits too."""

# mypy: disallow-subclassing-any=False
# (Django ships no type information: its base classes are Any to mypy.)
from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from imgproxy import maintenance
from imgproxy.contrib.django import serving
from imgproxy.contrib.django.lifecycle import CLOSE_SECONDS
from imgproxy.errors import ConfigError


class Command(BaseCommand):
    help = "Pre-render every file of an imgproxy store for some presets."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("store", help="a store of settings.IMGPROXY (or of the site's proxy)")
        parser.add_argument(
            "--preset", action="append", required=True, help="one name, or several: thumb,card"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        store: str = options["store"]
        presets = [n.strip() for item in options["preset"] for n in item.split(",") if n.strip()]

        def done(outcome: maintenance.Outcome) -> None:
            if outcome.status != 200:
                failure = f"{store}/{outcome.path} (p={outcome.preset}): {outcome.status}"
                self.stderr.write(f"failed: {failure} {outcome.detail}".rstrip())

        try:
            summary = serving.current().run(
                lambda proxy: maintenance.warm(proxy.services, store, presets, on_done=done)
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        finally:
            serving.close_own(CLOSE_SECONDS)
        self.stdout.write(
            f"warm {store}: made {summary.made}, failed {summary.failed}, "
            f"skipped {summary.skipped} (already cached)"
        )
        if summary.failed:
            raise CommandError(f"{summary.failed} renditions failed")
