"""Tests for smn_alert._settings: settings from keyword arguments and the environment, validated."""

from __future__ import annotations

import json
import logging
import logging.config
import re

import pytest
import yaml

from smn_alert._settings import PagerSettings, check_level, mask_secret
from smn_alert.errors import SMNConfigError

SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
TOPIC_URN = "urn:smn:cn-north-4:0605767ea3c4a1a5f6e3c00ec4a6e8e4:ops_pager"
NUMBER = "+8613800000000"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
AK = "QTWAOYTTINDUT2QVKYUC"


def sms(environ: dict[str, str] | None = None, **kwargs: object) -> PagerSettings:
    """Settings in SMS mode with a valid number and sign unless overridden; no process environment."""
    settings: dict[str, object] = {"endpoints": [NUMBER], "sign_id": SIGN_ID, **kwargs}
    return PagerSettings.from_kwargs(environ=environ or {}, **settings)


def topic(environ: dict[str, str] | None = None, **kwargs: object) -> PagerSettings:
    """Settings in topic mode unless overridden; no process environment."""
    return PagerSettings.from_kwargs(environ=environ or {}, **{"topic_urn": TOPIC_URN, **kwargs})


def config_error(**kwargs: object) -> str:
    """The message of the SMNConfigError that SMS-mode settings with ``kwargs`` raise."""
    with pytest.raises(SMNConfigError) as info:
        sms(**kwargs)
    return str(info.value)


class TestPrefix:
    def test_default_is_empty(self) -> None:
        """No prefix unless one is asked for."""
        assert sms().prefix == ""

    def test_stripped(self) -> None:
        """Surrounding spaces are removed."""
        assert sms(prefix="  shop-prod ").prefix == "shop-prod"

    def test_from_env_and_explicit_wins(self) -> None:
        """SMN_ALERT_PREFIX is the fallback; a passed prefix wins."""
        env = {"SMN_ALERT_PREFIX": "from-env"}

        assert sms(environ=env).prefix == "from-env"
        assert sms(environ=env, prefix="passed").prefix == "passed"

    def test_forty_characters_is_the_limit(self) -> None:
        """40 characters are accepted, 41 are refused with the setting's name."""
        assert sms(prefix="p" * 40).prefix == "p" * 40
        assert config_error(prefix="p" * 41).startswith("prefix='ppp")

    def test_too_long_env_prefix_names_the_env_var(self) -> None:
        """A too long prefix from the environment is reported under the variable's name."""
        assert config_error(environ={"SMN_ALERT_PREFIX": "p" * 50}).startswith("SMN_ALERT_PREFIX=")

    def test_non_string_is_refused(self) -> None:
        """A prefix must be text."""
        assert config_error(prefix=42) == "prefix=42: must be a string"


class TestNumbers:
    @pytest.mark.parametrize(("seconds", "limit"), [(3600.0, 60), (12 * 3600.0, 200)], ids=["hour", "12h"])
    def test_defaults_keep_one_process_within_smns_per_number_limits(
        self, seconds: float, limit: int
    ) -> None:
        """With the defaults, one process can never send a number more than SMN allows (SMN.0057 refuses)."""
        from .test_examples import most_sms

        assert most_sms(sms(), seconds) <= limit

    def test_defaults(self) -> None:
        """The documented defaults apply when nothing is given."""
        settings = sms()

        assert settings.max_length == 490
        assert (settings.budget, settings.budget_period) == (5, 600.0)
        assert settings.window == 300.0
        assert settings.capacity == 10_000
        assert settings.shutdown_timeout == 5.0
        assert (settings.max_retry_age, settings.circuit_cooldown) == (900.0, 300.0)
        assert settings.redact_patterns == ()

    def test_defaults_are_those_of_the_modules_that_use_them(self) -> None:
        """A default the pipeline also knows is the pipeline's: the settings never say a second one."""
        from smn_alert import _compose, _dispatcher, _pager, _ratelimit, _settings, _text

        settings = sms()
        assert settings.max_length == _text.DEFAULT_MAX_LENGTH
        assert settings.window == _pager.DEFAULT_WINDOW
        assert settings.capacity == _dispatcher.DEFAULT_CAPACITY
        assert settings.shutdown_timeout == _dispatcher.DEFAULT_SHUTDOWN_TIMEOUT
        assert settings.max_retry_age == _ratelimit.DEFAULT_MAX_AGE
        # The shortest max_length a user may set leaves the composer its own minimum after the longest
        # signature ("【" + 16 + "】"), which shares the page's length.
        assert _settings.MIN_MAX_LENGTH_SETTING - 18 >= _compose.MIN_PAGE_LENGTH

    def test_none_means_default(self) -> None:
        """A setting given as None (null in YAML) falls back to its default."""
        assert sms(budget=None, window=None).budget == 5

    def test_numeric_strings(self) -> None:
        """Numbers written as strings, as INI files and environments give them, are accepted."""
        settings = sms(
            budget="7",
            budget_period=" 60 ",
            window="2.5",
            capacity="100",
            max_length="160",
            shutdown_timeout="0",
        )

        assert settings.budget == 7
        assert type(settings.budget) is int
        assert (settings.budget_period, settings.window, settings.shutdown_timeout) == (60.0, 2.5, 0.0)
        assert (settings.capacity, settings.max_length) == (100, 160)

    def test_whole_floats_are_counts(self) -> None:
        """5.0 is a fine budget (JSON writers sometimes emit it) and becomes an int."""
        settings = sms(budget=5.0, capacity="20.0")

        assert (settings.budget, settings.capacity) == (5, 20)
        assert type(settings.capacity) is int

    @pytest.mark.parametrize(
        ("name", "value"),
        [("max_length", 40), ("max_length", 490), ("capacity", 10), ("shutdown_timeout", 0)],
    )
    def test_boundaries_accepted(self, name: str, value: int) -> None:
        """The edges of each range are allowed."""
        assert getattr(sms(**{name: value}), name) == value

    @pytest.mark.parametrize(
        ("name", "value", "why"),
        [
            ("budget", "lots", "must be a whole number from 1 to 100,000"),
            ("budget", 0, "must be a whole number from 1 to 100,000"),
            ("budget", -3, "must be a whole number from 1 to 100,000"),
            ("budget", 2.5, "must be a whole number from 1 to 100,000"),
            ("budget", True, "must be a whole number from 1 to 100,000"),
            ("budget", [5], "must be a whole number from 1 to 100,000"),
            ("budget_period", 0, "must be a number from 1 to 86,400 seconds (a day)"),
            ("budget_period", "nan", "must be a number from 1 to 86,400 seconds (a day)"),
            ("window", "inf", "must be more than 0 and at most 86,400 seconds (a day)"),
            ("window", "-1", "must be more than 0 and at most 86,400 seconds (a day)"),
            ("capacity", 9, "must be a whole number from 10 to 1,000,000"),
            ("capacity", "1e3x", "must be a whole number from 10 to 1,000,000"),
            ("max_length", 39, "must be a whole number from 40 to 490"),
            ("max_length", 491, "must be a whole number from 40 to 490"),
            ("max_length", "160.5", "must be a whole number from 40 to 490"),
            ("shutdown_timeout", -0.1, "must be a number from 0 to 300 seconds"),
            ("max_retry_age", 0, "must be more than 0 and at most 86,400 seconds (a day)"),
            ("circuit_cooldown", "soon", "must be more than 0 and at most 86,400 seconds (a day)"),
        ],
    )
    def test_bad_values_are_named(self, name: str, value: object, why: str) -> None:
        """Every bad number is refused with the setting's name, the value and the allowed range."""
        assert config_error(**{name: value}) == f"{name}={value!r}: {why}"

    @pytest.mark.parametrize(
        ("name", "value", "why"),
        [
            ("shutdown_timeout", 1e10, "must be a number from 0 to 300 seconds"),
            ("shutdown_timeout", 301, "must be a number from 0 to 300 seconds"),
            ("window", 1e10, "must be more than 0 and at most 86,400 seconds (a day)"),
            ("window", 86_401, "must be more than 0 and at most 86,400 seconds (a day)"),
            ("max_retry_age", "1e10", "must be more than 0 and at most 86,400 seconds (a day)"),
            ("circuit_cooldown", "1e400", "must be more than 0 and at most 86,400 seconds (a day)"),
            ("budget_period", 1e10, "must be a number from 1 to 86,400 seconds (a day)"),
            ("budget_period", 1e-310, "must be a number from 1 to 86,400 seconds (a day)"),
            ("budget", 10**9, "must be a whole number from 1 to 100,000"),
            ("budget_12h", "inf", "must be a whole number from 1 to 100,000"),
            ("capacity", 10**10, "must be a whole number from 10 to 1,000,000"),
            ("max_length", float("nan"), "must be a whole number from 40 to 490"),
        ],
    )
    def test_absurd_values_are_refused_with_the_range(self, name: str, value: object, why: str) -> None:
        """Durations and counts past any sane use (1e10 s overflows thread waits) fail at construction."""
        assert config_error(**{name: value}).endswith(f": {why}")

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("shutdown_timeout", 300),
            ("window", 86_400),
            ("max_retry_age", 86_400),
            ("circuit_cooldown", 86_400),
            ("budget_period", 1),
            ("budget_period", 86_400),
            ("budget", 100_000),
            ("budget_12h", 100_000),
            ("capacity", 1_000_000),
        ],
    )
    def test_upper_edges_accepted(self, name: str, value: int) -> None:
        """The top of each range is allowed."""
        assert getattr(sms(**{name: value}), name) == value

    def test_error_is_a_value_error(self) -> None:
        """dictConfig reports a bad setting as a ValueError at start-up."""
        with pytest.raises(ValueError, match="budget='lots': must be a whole number"):
            sms(budget="lots")


class TestLevel:
    @pytest.mark.parametrize(
        ("value", "level"),
        [
            (logging.ERROR, 40),
            (40.0, 40),
            ("ERROR", 40),
            ("error", 40),
            (" Critical ", 50),
            ("WARN", 30),
            ("35", 35),
            (5, 5),
        ],
    )
    def test_numbers_and_names(self, value: object, level: int) -> None:
        """A level is a whole number or a name logging knows, in any case; the result is an int."""
        assert check_level(value) == level
        assert type(check_level(value)) is int

    def test_custom_level_names(self) -> None:
        """A level added with logging.addLevelName is known by its name."""
        logging.addLevelName(45, "SMN_TEST_SEVERE")
        assert check_level("smn_test_severe") == 45

    @pytest.mark.parametrize("value", [3.5, True, None, "loud", "3.5", float("nan"), float("inf"), [40]])
    def test_anything_else_is_a_config_error_naming_level(self, value: object) -> None:
        """level=3.5 is the same configuration error (a ValueError) as every other bad setting."""
        with pytest.raises(SMNConfigError) as info:
            check_level(value)

        assert isinstance(info.value, ValueError)
        rule = "must be a level name such as 'ERROR' or a whole number such as 40"
        assert str(info.value) == f"level={value!r}: {rule}"


class TestRedactPatterns:
    def test_one_string_or_a_list(self) -> None:
        """A single pattern or a list of them is compiled, in order."""
        assert [p.pattern for p in sms(redact_patterns=r"hunter\d").redact_patterns] == [r"hunter\d"]
        compiled = sms(redact_patterns=["a+", re.compile("b+")]).redact_patterns
        assert [p.pattern for p in compiled] == ["a+", "b+"]
        assert compiled[0].sub("*", "caaat") == "c*t"

    def test_bad_regex_is_named_by_index(self) -> None:
        """A pattern that does not compile fails at start-up, naming the setting, its index and the error."""
        message = config_error(redact_patterns=["ok", "(unclosed"])

        assert message.startswith(
            "redact_patterns[1]: not a valid regular expression "
            "(missing ), unterminated subpattern at position 0)"
        )

    @pytest.mark.parametrize(
        "pattern",
        [
            "(hunter2",  # missing )
            r"hunter2\q",  # bad escape \q
            "[z-a]hunter2",  # bad character range z-a
            "(?<hunter2",  # unknown extension ?<h
            "(?P<x>a)(?P=hunter2)",  # unknown group name 'hunter2'
            r"\N{HUNTER2}",  # undefined character name 'HUNTER2'
            "(?P<2hunter>x)",  # bad character in group name '2hunter'
            "(?Lhunter2)",  # bad inline flags: cannot use 'L' ...
            "hunter2{3,2}",  # min repeat greater than max repeat
        ],
    )
    def test_bad_regex_error_quotes_no_part_of_the_pattern(self, pattern: str) -> None:
        """A pattern may be a literal secret: the error says where and what, never any of its text."""
        with pytest.raises(SMNConfigError) as info:
            sms(redact_patterns=["ok", pattern])
        message = str(info.value)

        assert message.startswith("redact_patterns[1]: not a valid regular expression (")
        assert "hunter" not in message.lower() and "z-a" not in message
        assert "the pattern is not shown" in message
        assert info.value.__context__ is None and info.value.__cause__ is None  # no re.error to print

    @pytest.mark.parametrize(
        ("value", "said"),
        [
            ([42], "redact_patterns[0]: a pattern must be a string, not int"),
            (["ok", b"hunter2"], "redact_patterns[1]: a pattern must be a string, not bytes"),
            ([re.compile(b"hunter2")], "redact_patterns[0]: a pattern must be a string, not a bytes pattern"),
            (42, "redact_patterns: must be a list of regular expressions, not int"),
            (b"hunter2", "redact_patterns: must be a list of regular expressions, not bytes"),
        ],
    )
    def test_non_strings_are_refused_without_echo(self, value: object, said: str) -> None:
        """Patterns must be strings; the error names the type, not the value."""
        assert config_error(redact_patterns=value) == said


class TestUnknownSettings:
    def test_typo_gets_a_hint(self) -> None:
        """A misspelt setting is the same configuration error as a bad value, suggesting the right name."""
        with pytest.raises(SMNConfigError, match=r"^unknown setting 'budgt' \(did you mean 'budget'\?\)$"):
            sms(budgt=3)

    def test_several_are_all_named(self) -> None:
        """Every unknown setting is named at once; a far-off name gets no hint."""
        message = config_error(endpoint=NUMBER, colour="red")

        assert message.startswith("unknown settings ")
        assert "'colour'" in message
        assert "'endpoint' (did you mean 'endpoints'?)" in message
        assert "'colour' (did you mean" not in message

    def test_unknown_setting_is_a_value_error_never_echoing_the_value(self) -> None:
        """An unknown setting is a ValueError, as dictConfig expects; a misnamed secret is not shown."""
        with pytest.raises(ValueError) as info:
            sms(skk=SK)

        assert "'skk' (did you mean 'sk'?)" in str(info.value)
        assert SK not in str(info.value)

    def test_level_is_not_a_setting_here(self) -> None:
        """The level belongs to the handler, which takes it out before calling from_kwargs."""
        with pytest.raises(SMNConfigError, match="'level'"):
            sms(level="ERROR")

    def test_dictconfig_names_the_unknown_setting(self) -> None:
        """dictConfig users get logging's "Unable to configure handler", caused by our error naming it."""
        handler = {"class": "smn_alert.SMNHandler", "endpoints": [NUMBER], "sign_id": SIGN_ID, "windw": 60}
        config = {"version": 1, "disable_existing_loggers": False, "handlers": {"pager": handler}}
        with pytest.raises(ValueError, match="Unable to configure handler 'pager'") as info:
            logging.config.dictConfig(config)

        assert isinstance(info.value.__cause__, SMNConfigError)
        assert str(info.value.__cause__) == "unknown setting 'windw' (did you mean 'window'?)"


class TestConnection:
    def test_only_given_settings_pass_through_untouched(self) -> None:
        """Connection settings reach the client as given (strings stay strings); absent or None ones don't."""
        settings = sms(region="cn-north-4", timeout="5", verify="false", ak=AK, sk=SK, project_id=None)

        assert settings.connection == {
            "region": "cn-north-4",
            "ak": AK,
            "sk": SK,
            "timeout": "5",
            "verify": "false",
        }

    def test_none_given(self) -> None:
        """With no connection settings, the client uses its own defaults (environment)."""
        assert sms().connection == {}


class TestRepr:
    def test_masks_numbers(self) -> None:
        """repr shows numbers with the middle hidden."""
        text = repr(sms(endpoints=[NUMBER, "13912345678"]))

        assert NUMBER not in text
        assert "13912345678" not in text
        assert "+86138****0000" in text
        assert "139****5678" in text

    def test_hides_secrets(self) -> None:
        """repr and str hide SK, tokens, most of the AK and redaction patterns (maybe literal secrets)."""
        settings = sms(
            ak=AK,
            sk=SK,
            security_token="tok-" + "s" * 40,
            auth_token="MIIx" + "t" * 60,
            redact_patterns=["hunter2"],
        )

        for text in (repr(settings), str(settings)):
            for secret in (SK, "tok-sss", "MIIxttt", AK, "hunter2"):
                assert secret not in text
            assert "'sk': '****'" in text
            assert "'ak': 'QTWA****'" in text
            assert "redact_patterns=<1 compiled>" in text

    def test_shows_the_rest(self) -> None:
        """Non-secret settings stay readable for diagnostics."""
        text = repr(sms(region="cn-north-4", budget=3))

        assert "mode='sms'" in text
        assert "budget=3" in text
        assert "'region': 'cn-north-4'" in text


class TestMasking:
    @pytest.mark.parametrize(("value", "masked"), [(None, "<unset>"), ("", "<empty>"), (SK, "****")])
    def test_mask_secret(self, value: str | None, masked: str) -> None:
        """A secret is shown only as set, empty or unset."""
        assert mask_secret(value) == masked

    def test_mask_secret_keep_only_for_long_values(self) -> None:
        """An identifier may keep a short head, but never most of a short value."""
        assert mask_secret(AK, keep=4) == "QTWA****"
        assert mask_secret("short", keep=4) == "****"


def _capturing_handler(**kwargs: object) -> logging.Handler:
    """A dictConfig handler factory that validates its settings the way SMNHandler does."""
    handler = logging.NullHandler()
    handler.settings = PagerSettings.from_kwargs(environ={}, **kwargs)  # type: ignore[attr-defined]
    return handler


class TestPlainConfigFiles:
    JSON_CONFIG = """
    {
      "version": 1,
      "handlers": {
        "pager": {
          "class": "smn_alert.SMNHandler",
          "level": "ERROR",
          "endpoints": ["+8613800000000", "+8613900000000"],
          "sign_id": "6be340e91e5241e4b5d85837e6709104",
          "region": "cn-north-4",
          "budget": "3",
          "window": 60,
          "redact_patterns": ["token=\\\\S+"]
        }
      }
    }
    """

    def test_json_dict_goes_through_from_kwargs(self) -> None:
        """A handler section loaded from JSON, minus class and level, is valid settings as is."""
        section = dict(json.loads(self.JSON_CONFIG)["handlers"]["pager"])
        for key in ("class", "level"):
            section.pop(key)

        settings = PagerSettings.from_kwargs(environ={}, **section)

        assert settings.endpoints == ("+8613800000000", "+8613900000000")
        assert (settings.budget, settings.window) == (3, 60.0)
        assert settings.connection == {"region": "cn-north-4"}
        assert settings.redact_patterns[0].sub("***", "token=abc def") == "*** def"

    def test_dictconfig_handler_factory_receives_valid_settings(self) -> None:
        """dictConfig's own handler construction (ConvertingList values, level removed) is accepted."""
        config = json.loads(self.JSON_CONFIG)
        # SMNHandler is written elsewhere; a factory in its place sees exactly what it would be given.
        del config["handlers"]["pager"]["class"]
        config["handlers"]["pager"]["()"] = _capturing_handler
        configurator = logging.config.DictConfigurator(config)

        handler = configurator.configure_handler(configurator.config["handlers"]["pager"])
        try:
            assert handler.settings.endpoints == ("+8613800000000", "+8613900000000")
            assert handler.level == logging.ERROR
        finally:
            handler.close()

    def test_yaml_config(self) -> None:
        """YAML booleans and a comma-separated string of quoted numbers work."""
        section = yaml.safe_load(
            """
            endpoints: "+8613800000000, +8613900000000"
            message_include_sign_flag: yes
            signature: 【XX商城】
            budget_period: 600
            shutdown_timeout: 2.5
            """
        )

        settings = PagerSettings.from_kwargs(environ={}, **section)

        assert settings.message_include_sign_flag == "true"
        assert settings.endpoints == ("+8613800000000", "+8613900000000")
        assert settings.shutdown_timeout == 2.5

    def test_yaml_unquoted_number_is_caught(self) -> None:
        """YAML reads an unquoted +86... as an integer; the error says to quote it instead of paging 86..."""
        section = yaml.safe_load("endpoints: [+8613800000000]\nsign_id: abc")

        with pytest.raises(SMNConfigError, match=r"endpoints\[0\]=8613800000000: .*quote it"):
            PagerSettings.from_kwargs(environ={}, **section)
