"""Tests for smn_alert._request_fields: whom a pager pages and the fields its requests carry, read through
PagerSettings.from_kwargs as users give them (arguments, then the environment)."""

from __future__ import annotations

import pytest

from smn_alert._settings import PagerSettings
from smn_alert.errors import SMNConfigError

from .test_settings import NUMBER, SIGN_ID, TOPIC_URN, config_error, sms, topic


class TestTarget:
    def test_list_of_numbers_dedup_in_order(self) -> None:
        """Numbers are kept in the order given, each once."""
        settings = sms(endpoints=["+8613900000000", NUMBER, "+8613900000000"])

        assert settings.endpoints == ("+8613900000000", NUMBER)
        assert settings.mode == "sms"
        assert settings.topic_urn is None

    @pytest.mark.parametrize(
        "value", [f" {NUMBER} , 13900000000,", f"{NUMBER};13900000000", (NUMBER, "13900000000")]
    )
    def test_comma_or_semicolon_string_and_tuple(self, value: object) -> None:
        """One string with commas or semicolons works like a list; blanks and spaces are ignored."""
        assert sms(endpoints=value).endpoints == (NUMBER, "13900000000")

    def test_number_read_as_int_is_refused_with_hint(self) -> None:
        """A number YAML/JSON turned into an int (dropping '+') is refused, saying to quote it."""
        message = config_error(endpoints=[8613800000000])

        assert message.startswith("endpoints[0]=8613800000000:")
        assert "quote" in message

    def test_invalid_number_is_named(self) -> None:
        """A bad number is named with its position and value."""
        message = config_error(endpoints=[NUMBER, "call me"])

        assert message.startswith("endpoints[1]='call me':")

    @pytest.mark.parametrize("value", ["", " , ;", []])
    def test_no_numbers_is_refused(self, value: object) -> None:
        """An empty list of numbers is an error, not a pager that pages nobody."""
        assert "at least one phone number" in config_error(endpoints=value)

    @pytest.mark.parametrize("value", [{"a": NUMBER}, 8613800000000])
    def test_neither_list_nor_string_is_refused(self, value: object) -> None:
        """A mapping or a bare number is not a list of numbers."""
        assert config_error(endpoints=value).startswith(f"endpoints={value!r}: must be a list")

    def test_topic_mode(self) -> None:
        """A topic URN alone publishes to the topic."""
        settings = topic(subject="prod alerts")

        assert settings.mode == "topic"
        assert settings.topic_urn == TOPIC_URN
        assert settings.endpoints == ()
        assert settings.subject == "prod alerts"

    def test_bad_topic_urn_is_named(self) -> None:
        """A topic URN of the wrong shape is refused with its value."""
        with pytest.raises(SMNConfigError, match=r"^topic_urn='ops_pager': must look like urn:smn:"):
            topic(topic_urn="ops_pager")

    def test_both_given_is_refused(self) -> None:
        """Numbers and a topic together are ambiguous: refused, naming both."""
        with pytest.raises(SMNConfigError, match=r"^topic_urn='urn:smn:.*endpoints or topic_urn, not both"):
            sms(topic_urn=TOPIC_URN)

    def test_neither_given_names_the_env_vars(self) -> None:
        """With no target at all, the error says which environment variables could provide one."""
        with pytest.raises(SMNConfigError) as info:
            PagerSettings.from_kwargs(environ={}, sign_id=SIGN_ID)
        message = str(info.value)

        assert "endpoints or topic_urn is required" in message
        assert "SMN_ALERT_ENDPOINTS" in message
        assert "SMN_ALERT_TOPIC_URN" in message

    def test_endpoints_from_env(self) -> None:
        """SMN_ALERT_ENDPOINTS (comma-separated) supplies the numbers when none are passed."""
        env = {"SMN_ALERT_ENDPOINTS": f"{NUMBER},13900000000", "SMN_ALERT_SIGN_ID": SIGN_ID}

        settings = PagerSettings.from_kwargs(environ=env)

        assert settings.endpoints == (NUMBER, "13900000000")
        assert settings.sign_id == SIGN_ID

    def test_topic_from_env(self) -> None:
        """SMN_ALERT_TOPIC_URN supplies the topic when nothing is passed."""
        settings = PagerSettings.from_kwargs(environ={"SMN_ALERT_TOPIC_URN": TOPIC_URN})

        assert (settings.mode, settings.topic_urn) == ("topic", TOPIC_URN)

    def test_explicit_endpoints_ignore_env_topic(self) -> None:
        """Passing endpoints wins over a topic URN in the environment."""
        settings = sms(environ={"SMN_ALERT_TOPIC_URN": TOPIC_URN})

        assert (settings.mode, settings.endpoints) == ("sms", (NUMBER,))

    def test_explicit_topic_ignores_env_endpoints(self) -> None:
        """Passing topic_urn wins over numbers in the environment."""
        settings = topic(environ={"SMN_ALERT_ENDPOINTS": NUMBER, "SMN_ALERT_SIGN_ID": SIGN_ID})

        assert (settings.mode, settings.endpoints, settings.sign_id) == ("topic", (), None)

    def test_explicit_endpoints_win_over_env_endpoints(self) -> None:
        """Passed numbers replace the environment's, they are not merged."""
        settings = sms(environ={"SMN_ALERT_ENDPOINTS": "13900000000"})

        assert settings.endpoints == (NUMBER,)

    def test_both_env_vars_is_refused(self) -> None:
        """Numbers and a topic both in the environment, with nothing passed, is ambiguous."""
        env = {"SMN_ALERT_ENDPOINTS": NUMBER, "SMN_ALERT_TOPIC_URN": TOPIC_URN}

        with pytest.raises(SMNConfigError, match="SMN_ALERT_ENDPOINTS and SMN_ALERT_TOPIC_URN are both set"):
            PagerSettings.from_kwargs(environ=env, sign_id=SIGN_ID)

    def test_bad_env_number_names_the_env_var(self) -> None:
        """A bad number from the environment is reported under the variable's name."""
        with pytest.raises(SMNConfigError, match=r"^SMN_ALERT_ENDPOINTS\[0\]='nope':"):
            PagerSettings.from_kwargs(environ={"SMN_ALERT_ENDPOINTS": "nope"}, sign_id=SIGN_ID)

    def test_blank_env_counts_as_unset(self) -> None:
        """An exported but empty variable does not count."""
        settings = topic(environ={"SMN_ALERT_ENDPOINTS": "  "})

        assert settings.mode == "topic"

    def test_process_environment_is_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without environ=, os.environ is read."""
        monkeypatch.setenv("SMN_ALERT_TOPIC_URN", TOPIC_URN)
        monkeypatch.delenv("SMN_ALERT_ENDPOINTS", raising=False)

        assert PagerSettings.from_kwargs().topic_urn == TOPIC_URN


class TestSign:
    def test_sign_id(self) -> None:
        """With a sign id, SMN adds the signature; no flag is sent."""
        settings = sms()

        assert (settings.sign_id, settings.message_include_sign_flag) == (SIGN_ID, None)

    @pytest.mark.parametrize("flag", [True, "true", "TRUE", "yes", "1", 1])
    def test_flag_spellings_normalize_to_true(self, flag: object) -> None:
        """Every way config files say yes becomes SMN's string "true"."""
        settings = sms(sign_id=None, message_include_sign_flag=flag, signature="【XX商城】")

        assert (settings.sign_id, settings.message_include_sign_flag) == (None, "true")
        assert settings.signature == "【XX商城】"

    def test_flag_needs_the_signature_it_promises(self) -> None:
        """With the flag the caller writes 【sign】: it must be given, well-formed, and only then."""
        assert "needs signature=" in config_error(sign_id=None, message_include_sign_flag="true")
        bad = config_error(sign_id=None, message_include_sign_flag="true", signature="XX商城")
        assert bad.startswith("signature='XX商城': must be your approved signature in 【】")
        assert config_error(signature="【XX商城】").startswith("signature='【XX商城】': is only used with")

    @pytest.mark.parametrize("flag", [False, "false", "no", "0"])
    def test_false_flag_beside_sign_id_is_fine(self, flag: object) -> None:
        """Saying the flag is false (SMN's default) next to a sign id is accepted and not sent."""
        assert sms(message_include_sign_flag=flag).message_include_sign_flag is None

    def test_flag_and_sign_id_is_refused(self) -> None:
        """A sign id and a true flag contradict each other."""
        assert "give only one" in config_error(message_include_sign_flag="yes")

    def test_bad_flag_is_named(self) -> None:
        """A flag that is not a boolean is refused with its value."""
        assert config_error(message_include_sign_flag="maybe").startswith(
            "message_include_sign_flag='maybe': must be true or false"
        )

    def test_neither_is_refused_naming_env_var(self) -> None:
        """SMS mode without a signature says what is needed and where it may come from."""
        message = config_error(sign_id=None)

        assert "sign_id or message_include_sign_flag='true' is required" in message
        assert "SMN_ALERT_SIGN_ID" in message

    def test_sign_id_from_env(self) -> None:
        """SMN_ALERT_SIGN_ID supplies the sign id when none is passed."""
        assert sms(environ={"SMN_ALERT_SIGN_ID": "abc123"}, sign_id=None).sign_id == "abc123"

    def test_explicit_sign_id_wins_over_env(self) -> None:
        """A passed sign id beats the environment's."""
        assert sms(environ={"SMN_ALERT_SIGN_ID": "abc123"}).sign_id == SIGN_ID

    def test_explicit_flag_ignores_env_sign_id(self) -> None:
        """Passing the flag means the message carries the sign: the environment's sign id is ignored."""
        settings = sms(
            environ={"SMN_ALERT_SIGN_ID": "abc123"},
            sign_id=None,
            message_include_sign_flag=True,
            signature="【XX商城】",
        )

        assert (settings.sign_id, settings.message_include_sign_flag) == (None, "true")

    def test_bad_sign_id_is_named(self) -> None:
        """A sign id with characters the console never gives is refused with its value."""
        assert config_error(sign_id="my sign!").startswith("sign_id='my sign!':")

    def test_extend_fields(self) -> None:
        """extend_code and extend_src_id are kept; a numeric extend_src_id becomes digits."""
        settings = sms(extend_code="ops-42", extend_src_id=12)

        assert (settings.extend_code, settings.extend_src_id) == ("ops-42", "12")

    @pytest.mark.parametrize(
        ("name", "value"),
        [("extend_code", "x" * 33), ("extend_src_id", "123456789"), ("extend_src_id", "12a")],
    )
    def test_bad_extend_fields_are_named(self, name: str, value: str) -> None:
        """Extension fields over SMN's limits are refused with their value."""
        assert config_error(**{name: value}).startswith(f"{name}='")

    def test_subject_is_refused_in_sms_mode(self) -> None:
        """A subject only exists for topic messages."""
        assert config_error(subject="hi").startswith("subject='hi': is only used with topic_urn")

    def test_long_subject_is_refused(self) -> None:
        """A subject over 512 bytes is refused in topic mode."""
        with pytest.raises(SMNConfigError, match=r"^subject="):
            topic(subject="告警" * 100)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("sign_id", SIGN_ID),
            ("message_include_sign_flag", "true"),
            ("extend_code", "x"),
            ("extend_src_id", "1"),
        ],
    )
    def test_sms_only_fields_are_refused_in_topic_mode(self, name: str, value: str) -> None:
        """Signature and extension settings with a topic are a mistake and are named."""
        with pytest.raises(SMNConfigError, match=f"^{name}='{value}': only used with endpoints"):
            topic(**{name: value})
