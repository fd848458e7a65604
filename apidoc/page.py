"""The browsable page of the document: Powertools' Swagger UI, with its assets inlined.

Powertools ships Swagger UI's bundle and stylesheet inside the aws-lambda-powertools package (pinned
in requirements-dev.txt) and inlines them when no `swagger_base_url` is given, which is what
`enable_swagger()` serves; this page is built the same way, so it needs no network at all: no CDN,
no fonts, the document itself embedded in the page.
"""

from __future__ import annotations

from pathlib import Path

TITLE = "Braze event forwarder API"


def html(document_json: str) -> str:
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    assets = Path(swagger_ui.__file__).parent
    page = swagger_ui.generate_swagger_html(
        # As enable_swagger() does: "</" inside the embedded JSON must not close the <script>.
        document_json.replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",  # no base url: the assets are inlined
        None,
    )
    return page.replace("<title>Swagger UI</title>", f"<title>{TITLE}</title>", 1)
