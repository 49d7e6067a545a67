"""Settings: every setting documented; environment and file parsing."""

from __future__ import annotations

from pathlib import Path

from tingfeng.settings import Settings, load_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_is_documented_with_its_help() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert f"| `{name}` |" in doc, f"{name} is missing from docs/configuration.md"
        assert field.description and field.description in doc, f"help of {name} differs in the docs"


def test_environment_overrides_file_and_defaults(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "tf.toml"
    config.write_text(
        'database_url = "sqlite:///from-file.db"\nweb_port = 9001\n', encoding="utf-8"
    )
    monkeypatch.setenv("TINGFENG_CONFIG", str(config))
    monkeypatch.setenv("TINGFENG_WEB_PORT", "9002")
    monkeypatch.setenv("TINGFENG_FETCH_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    s = load_settings()
    assert s.database_url == "sqlite:///from-file.db"
    assert s.web_port == 9002
    assert s.fetch_allowed_networks == ["127.0.0.0/8"]
    assert load_settings(database_url="sqlite:///cli.db").database_url == "sqlite:///cli.db"
