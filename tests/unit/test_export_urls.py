"""What an export download url may be, and the download's caps (exports/urls.py)."""

from __future__ import annotations

import io
import socket

import pytest
import requests

from braze_forwarder.config import ConfigurationError, ExportCopierSettings, ExportStarterSettings
from braze_forwarder.exports import urls

DEFAULT = urls.DEFAULT_ALLOWED_HOSTS


@pytest.mark.parametrize(
    "url",
    [
        "https://braze-exports.s3.amazonaws.com/segment-export/x.zip?X-Amz-Signature=abc",
        "https://s3.amazonaws.com/braze-exports/x.zip",
        "https://s3.eu-central-1.amazonaws.com/braze-exports/x.zip",
        "https://braze-exports.s3.eu-central-1.amazonaws.com/x.zip",
        "https://BRAZE-EXPORTS.S3.AMAZONAWS.COM:443/x.zip",
    ],
)
def test_presigned_s3_urls_are_allowed_by_default(url):
    assert urls.check_download_url(url, DEFAULT, allow_loopback=False).hostname


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://braze-exports.s3.amazonaws.com/x.zip", "not https"),
        ("https://a.b.s3.amazonaws.com/x.zip", "not in the allow-list"),
        ("https://s3.amazonaws.com.evil.example/x.zip", "not in the allow-list"),
        ("https://evils3.amazonaws.com/x.zip", "not in the allow-list"),
        ("https://169.254.169.254/latest/meta-data/", "IP address"),
        ("https://[fd00::1]/x", "IP address"),
        ("https://127.0.0.1:8080/x", "loopback"),
        ("http://localhost/x", "loopback"),
        ("https://u:p@braze-exports.s3.amazonaws.com/x.zip", "credentials"),
        ("https://braze-exports.s3.amazonaws.com:8443/x.zip", "port 8443"),
        ("https://braze-exports.s3.amazonaws.com/x zip", "whitespace"),
        ("file:///etc/passwd", "no host"),
        ("https://braze-exports.s3.amazonaws.com:99999/x", "not a valid URL"),
        ("https://" + "a" * 9000, "8,192"),
        (None, "a string"),
    ],
)
def test_everything_else_is_refused_with_a_reason_that_names_only_the_host(url, why):
    with pytest.raises(urls.UrlNotAllowed, match=why) as refused:
        urls.check_download_url(url, DEFAULT, allow_loopback=False)
    assert "meta-data" not in str(refused.value) and ":p@" not in str(refused.value)


def test_loopback_needs_the_opt_in_and_then_plain_http_is_fine():
    assert urls.check_download_url("http://127.0.0.1:8181/x.zip", DEFAULT, allow_loopback=True).port == 8181
    assert urls.check_download_url("http://localhost:8181/x.zip", (), allow_loopback=True)
    with pytest.raises(urls.UrlNotAllowed):
        urls.check_download_url("http://127.0.0.1:8181/x.zip", DEFAULT, allow_loopback=False)


@pytest.mark.parametrize("pattern", ["*", "*.com", "127.0.0.1", "s3-*.amazonaws.com", "exa mple.com", "*.*"])
def test_allow_list_patterns_are_host_names_with_whole_label_wildcards(pattern):
    with pytest.raises(ValueError, match=r"not a host pattern|IP addresses are not accepted"):
        urls.check_host_pattern(pattern)


def test_the_allow_list_setting_is_validated_at_cold_start():
    base = {"EXPORT_JOBS_TABLE": "t", "LAKE_BUCKET": "lake"}
    assert ExportCopierSettings.from_environ(base).export_url_allowed_hosts == DEFAULT
    custom = ExportCopierSettings.from_environ(
        {**base, "EXPORT_URL_ALLOWED_HOSTS": "exports.example.com, *.cdn.example"}
    )
    assert custom.export_url_allowed_hosts == ("exports.example.com", "*.cdn.example")
    assert custom.export_url_allow_loopback is False
    with pytest.raises(ConfigurationError, match="EXPORT_URL_ALLOWED_HOSTS"):
        ExportCopierSettings.from_environ({**base, "EXPORT_URL_ALLOWED_HOSTS": "169.254.169.254"})


def test_the_starter_refuses_unknown_export_fields_and_a_plain_http_callback_base():
    base = {
        "BRAZE_REST_ENDPOINT": "https://rest.fra-01.braze.eu",
        "BRAZE_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:braze",
        "EXPORT_JOBS_TABLE": "jobs",
        "EXPORT_CALLBACK_BASE_URL": "https://abc123.execute-api.eu-central-1.amazonaws.com/",
    }
    settings = ExportStarterSettings.from_environ({**base, "EXPORT_FIELDS": "external_id, braze_id,external_id"})
    assert settings.export_fields == ("external_id", "braze_id")
    assert settings.export_callback_base_url == "https://abc123.execute-api.eu-central-1.amazonaws.com"
    with pytest.raises(ConfigurationError, match=r"EXPORT_FIELDS: .*shoe_size"):
        ExportStarterSettings.from_environ({**base, "EXPORT_FIELDS": "email,shoe_size"})
    with pytest.raises(ConfigurationError, match="EXPORT_CALLBACK_BASE_URL"):
        ExportStarterSettings.from_environ({**base, "EXPORT_CALLBACK_BASE_URL": "http://example.com"})


def test_an_allowed_name_that_resolves_to_a_private_address_is_not_fetched(monkeypatch):
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(urls.socket, "getaddrinfo", resolve)
    monkeypatch.setattr(requests.Session, "get", lambda *a, **k: pytest.fail("must not connect"))

    with pytest.raises(urls.DownloadFailed, match="non-public address") as failed:
        urls.download(
            "https://braze-exports.s3.amazonaws.com/x.zip",
            io.BytesIO(),
            allowed_hosts=DEFAULT,
            allow_loopback=False,
            max_bytes=1024,
            timeout_seconds=5,
        )
    assert failed.value.permanent is True


def test_host_of_never_returns_the_query():
    assert urls.host_of("https://b.s3.amazonaws.com/x?X-Amz-Credential=secret") == "b.s3.amazonaws.com"
    assert urls.host_of(None) == "?"
