"""Tests for smn_alert/__init__.py: the public surface is what the README documents, and only that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import smn_alert
import smn_alert.testing

PACKAGE = Path(smn_alert.__file__).parent

#: What the README documents: the handler, the processor, the client and its results, the errors, the loop
#: guard, the segment helpers the command line shows, and the version.
DOCUMENTED = {
    "SMNHandler",
    "SMNProcessor",
    "SMNClient",
    "EndpointResult",
    "SmsBatchResult",
    "TopicPublishResult",
    "SMNError",
    "SMNAuthError",
    "SMNConfigError",
    "SMNConnectionError",
    "SMNRequestError",
    "SMNServerError",
    "SMNThrottledError",
    "ignore_logger",
    "count_segments",
    "sms_encoding",
    "billed_segments",
    "__version__",
}
#: What smn_alert.testing documents: the fake server and its records, the recording sender, the clock.
DOCUMENTED_TESTING = {
    "FakeSMNServer",
    "ReceivedMessage",
    "ReceivedRequest",
    "DEFAULT_AK",
    "DEFAULT_SK",
    "DEFAULT_PROJECT_ID",
    "RecordingSender",
    "DEFAULT_RECIPIENTS",
    "FakeClock",
}
#: The modules that are public besides the package itself; every other module's name starts with "_".
PUBLIC_MODULES = {"errors.py", "testing"}


class TestSurface:
    def test_all_is_sorted_and_exactly_the_documented_names(self) -> None:
        """__all__ says the public surface in one place, sorted, with nothing more and nothing less."""
        assert smn_alert.__all__ == sorted(smn_alert.__all__)
        assert set(smn_alert.__all__) == DOCUMENTED
        assert len(smn_alert.__all__) == len(DOCUMENTED)

    @pytest.mark.parametrize("name", sorted(DOCUMENTED))
    def test_each_public_name_resolves(self, name: str) -> None:
        """Every name of __all__ loads, from smn_alert itself, and is listed by dir()."""
        assert getattr(smn_alert, name) is not None
        assert name in dir(smn_alert)

    def test_unknown_name_is_an_attribute_error(self) -> None:
        """A name outside the surface is not loaded from some private module."""
        with pytest.raises(AttributeError, match="PagerSettings"):
            smn_alert.PagerSettings  # noqa: B018 (the access raises)

    def test_errors_are_the_errors_module_classes(self) -> None:
        """The errors are defined once, in smn_alert.errors, and re-exported as they are."""
        for name in smn_alert.errors.__all__:
            assert getattr(smn_alert, name) is getattr(smn_alert.errors, name)
        assert set(smn_alert.errors.__all__) <= DOCUMENTED

    def test_testing_all_is_sorted_and_exactly_the_documented_names(self) -> None:
        """smn_alert.testing says its surface in its __all__ too."""
        assert smn_alert.testing.__all__ == sorted(smn_alert.testing.__all__)
        assert set(smn_alert.testing.__all__) == DOCUMENTED_TESTING
        for name in smn_alert.testing.__all__:
            assert getattr(smn_alert.testing, name) is not None


class TestPrivateByDefault:
    def test_no_public_module_besides_errors_and_testing(self) -> None:
        """A new module is private (``_name.py``) unless it is added here and to the README on purpose."""
        assert _public_modules(PACKAGE) == PUBLIC_MODULES

    def test_testing_has_no_public_module(self) -> None:
        """smn_alert.testing's parts are private modules; its __init__ says what is public."""
        assert _public_modules(PACKAGE / "testing") == set()

    @pytest.mark.subprocess
    def test_import_is_cheap(self) -> None:
        """`import smn_alert` loads the errors only: no requests, no private module, no text tables."""
        code = (
            "import sys, smn_alert\n"
            "loaded = sorted(name for name in sys.modules if name.startswith('smn_alert'))\n"
            "assert loaded == ['smn_alert', 'smn_alert.errors'], loaded\n"
            "assert 'requests' not in sys.modules\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _public_modules(folder: Path) -> set[str]:
    """The modules and packages in ``folder`` whose names do not start with ``_`` (data files aside)."""
    modules = {path for path in folder.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()}
    return {path.name for path in modules if not path.name.startswith("_")}
