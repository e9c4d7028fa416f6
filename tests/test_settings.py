"""Settings are one table, overridable by environment variables and documented in docs/settings.md."""

from __future__ import annotations

import pytest

from app import settings
from app.settings import ROOT, SETTINGS, Setting

DOCUMENTED = ROOT / "docs" / "settings.md"
#: A valid, non-default value for settings whose parser is neither a number nor free text.
EXAMPLES = {"scheduler": "off", "detectors": "iforest,lof", "evidence_shift": "1.5",
            "kind_weights": "fixed_text=1,free_text=1,mouse=0.5,time=0"}


def example_value(setting: Setting) -> str:
    if setting.name in EXAMPLES:
        return EXAMPLES[setting.name]
    if setting.parse in (int, float):
        return str(setting.default + 1)
    if setting.parse is str:
        return "/somewhere/else"
    raise AssertionError(f"add a valid non-default value for setting {setting.name!r} to EXAMPLES")


def test_the_settings_page_is_the_table_the_code_prints() -> None:
    """docs/settings.md holds `python -m app settings --markdown` exactly: a new setting, a changed
    default or help text fails here until the page is regenerated."""
    assert DOCUMENTED.is_file(), f"{DOCUMENTED} is missing"
    text = DOCUMENTED.read_text(encoding="utf-8")
    table = text[text.index("| variable |"):].strip()
    assert table == settings.markdown_table(), (
        "docs/settings.md is out of date: regenerate its table with `python -m app settings --markdown`")
    assert all(f"`{s.env}`" in table for s in SETTINGS)


def test_the_settings_command_says_where_each_value_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_SENSITIVITY", "0.5")
    monkeypatch.delenv("TELLTALE_TARGET_FRR", raising=False)
    shown = {row["variable"]: row for row in settings.current()}
    assert shown["TELLTALE_SENSITIVITY"] == {"variable": "TELLTALE_SENSITIVITY", "value": "0.5",
                                             "source": "environment"}
    assert shown["TELLTALE_TARGET_FRR"]["source"] == "default"
    assert shown["TELLTALE_KIND_WEIGHTS"]["value"] == "fixed_text=1,free_text=1,mouse=1,time=0.5"


def test_setting_names_and_variables_are_unique() -> None:
    assert len({s.name for s in SETTINGS}) == len({s.env for s in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_environment_variable_overrides_the_default(setting: Setting, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(setting.env, raising=False)
    assert settings.get(setting.name) == setting.default_value()

    raw = example_value(setting)
    monkeypatch.setenv(setting.env, raw)
    assert settings.get(setting.name) == setting.parse(raw)
    assert settings.get(setting.name) != setting.default_value()

    monkeypatch.setenv(setting.env, "")  # set but empty: the default
    assert settings.get(setting.name) == setting.default_value()


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.parse is not str], ids=lambda s: s.name)
def test_an_invalid_value_stops_with_a_clear_message(setting: Setting, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(setting.env, "lots")

    with pytest.raises(SystemExit) as stopped:
        settings.get(setting.name)

    message = str(stopped.value)
    assert message.startswith(f"{setting.env}='lots' is not valid")
    assert setting.help in message


def test_cli_reports_an_invalid_setting_without_a_traceback(run_cli, good_csv, tmp_path) -> None:
    done = run_cli("ingest", good_csv, "--db", tmp_path / "t.duckdb", env={"TELLTALE_INGEST_CHUNK_ROWS": "many"})

    assert done.returncode != 0
    assert "TELLTALE_INGEST_CHUNK_ROWS='many' is not valid" in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_table_for_the_docs_has_every_setting_without_local_paths() -> None:
    table = settings.as_table()

    assert [row["variable"] for row in table] == [s.env for s in SETTINGS]
    assert all(str(ROOT) not in row["default"] for row in table)


def test_the_detectors_a_setting_accepts_are_the_registered_ones() -> None:
    """`KNOWN_DETECTORS` is written out so that reading a setting does not load PyOD and torch; it must
    name exactly the registered detectors the app can run (PyOD's references are for benchmarks)."""
    from detectors import DETECTORS
    from detectors.base import reference_for

    assert set(settings.KNOWN_DETECTORS) == {name for name in DETECTORS if reference_for(name) is None}
