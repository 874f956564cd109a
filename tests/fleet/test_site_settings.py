"""``serve --fleet`` options as the site reads them (passbridge/fleet/site_link.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.core.tokens import public_key_to_pem
from passbridge.fleet.site_link import (
    FleetSettings,
    FleetSetupError,
    admin_kid,
    check_settings,
    load_admin_keys,
)


def _pem(path: Path) -> Path:
    path.write_text(public_key_to_pem(ec.generate_private_key(ec.SECP256R1())))
    return path


def test_the_kid_of_the_hubs_key_file_is_the_kid_the_hub_signs_with(tmp_path: Path) -> None:
    # `passbridge hub keys create` writes fleet-admin.pub.pem and signs as fleet-admin.
    assert admin_kid(Path("keys/fleet-admin.pub.pem")) == "fleet-admin"
    assert admin_kid(Path("ops.pem")) == "ops"
    assert admin_kid(Path(".pub.pem")) == ".pub"
    keys = load_admin_keys([str(_pem(tmp_path / "fleet-admin.pub.pem")),
                            f"second={_pem(tmp_path / 'other.pem')}"])
    assert sorted(keys) == ["fleet-admin", "second"]
    with pytest.raises(FleetSetupError, match="given twice"):
        load_admin_keys([str(tmp_path / "fleet-admin.pub.pem"),
                         f"fleet-admin={tmp_path / 'other.pem'}"])


def test_the_url_is_checked_and_never_shown_with_its_credentials(tmp_path: Path) -> None:
    settings = FleetSettings("nats://site:s3cret@nats.example.net:4222")
    assert settings.redacted_url() == "nats://nats.example.net:4222"
    check_settings(settings)
    with pytest.raises(FleetSetupError, match="--fleet"):
        check_settings(FleetSettings("http://nats.example.net"))
    with pytest.raises(FleetSetupError, match="--fleet-creds"):
        check_settings(FleetSettings("nats://h:1", creds=tmp_path / "missing.creds"))
