"""What a secret looks like: the key names that hold one, and the built-in patterns that find one in text.

One place for both users of these rules: the text redaction (:mod:`smn_alert._text`), and the structlog
adapter, which masks the value of a secret-named key before any text is written. Every built-in pattern is
a row of :data:`SECRET_SHAPES` that says what it must catch and what it must leave alone; the tests check
each row both ways, so a new pattern comes with its evidence.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

#: Regular-expression alternatives for secret key names, matched case-insensitively at a name's end.
KEY_WORDS = (
    r"passw(?:or)?d|passphrase|passcode|pwd|secret|token|credentials?|apikey"
    r"|(?:api|access|secret|private|signing|encryption)[_-]?key"
)
# Short names that hold a secret only alone or after a separator: pw, db_pass, HUAWEICLOUD_SDK_SK (not bypass,
# disk or api.shop.sk).
_SHORT_WORDS = r"pass|sk|pw"

# structlog keys also hide an auth tuple, a signature and a cookie by name: auth=("bob", "pw") is masked.
_SECRET_KEY = re.compile(
    rf"(?i)(?:{KEY_WORDS}|signature)$|(?:^|[_-])(?:{_SHORT_WORDS}|sig|auth|creds?|authorization|cookie)$"
)


def is_secret_key(name: object) -> bool:
    """Tell whether a key called ``name`` holds a secret (``db_password``, ``apiKey``, ``aws_sk``, ``pw``)."""
    return isinstance(name, str) and _SECRET_KEY.search(name) is not None


def masked(value: object, budget: int, depth: int = 4) -> object:
    """Copy ``value`` with the values of secret-named keys in its dicts, a few levels deep, as ``***``.

    Only plain dicts, lists and tuples are copied (anything else keeps its own ``repr``, for the text
    redaction to look at). The copy holds at most ``budget`` items in all: give the most characters that
    will be shown, as each item shows as one at least, so a huge structure costs little and loses nothing.
    """
    return _masked(value, [budget], depth)


def _masked(value: object, budget: list[int], depth: int) -> object:
    if depth <= 0:
        return value
    if isinstance(value, dict) and type(value) is dict:
        copy: dict[object, object] = {}
        for key, item in value.items():
            if budget[0] <= 0:
                break
            budget[0] -= 1
            copy[key] = "***" if is_secret_key(key) else _masked(item, budget, depth - 1)
        return copy
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items: list[object] = []
        for item in value:
            if budget[0] <= 0:
                break
            budget[0] -= 1
            items.append(_masked(item, budget, depth - 1))
        return items if type(value) is list else tuple(items)
    return value


# --- card numbers ---------------------------------------------------------------------------------------
def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_like(digits: str) -> bool:
    """Tell whether ``digits`` has a length and first digits a card network issues, and a valid Luhn sum.

    13 digits: Visa (4); 14: Diners (30, 36, 38, 39); 15: Amex (34, 37); 16 to 19: first digit 2 to 6.

    Epoch timestamps (s, ms, us, ns) start with 1, phone numbers are logged with "+", zero-padded ids
    start with 0: none of them is taken for a card.
    """
    size = len(digits)
    if size == 13:
        fits = digits.startswith("4")
    elif size == 14:
        fits = digits.startswith(("30", "36", "38", "39"))
    elif size == 15:
        fits = digits.startswith(("34", "37"))
    else:
        fits = 16 <= size <= 19 and digits[0] in "23456"
    return fits and _luhn(digits)


def is_card_number(text: str) -> bool:
    """Tell whether ``text`` (digits, maybe in groups) is or holds a card number: some run of its groups is.

    A following group (a CVV, a year) does not hide the card before it: ``4111 1111 1111 1111 123`` is one.
    """
    groups = re.split(r"[ -]", text)
    return any(
        _card_like("".join(groups[start:end]))
        for start in range(len(groups))
        for end in range(start + 1, len(groups) + 1)
    )


# --- the built-in patterns ------------------------------------------------------------------------------
class SecretShape(NamedTuple):
    """One built-in secret pattern, with the evidence that it works and stays out of the way.

    Attributes:
        name: What it finds, for the tests' ids.
        pattern: The regular expression. A group named ``secret`` is what is hidden (the key name before
            it stays readable); without it, the whole match is.
        caught: ``(as logged, as paged)`` pairs: this pattern alone, and all of them together, turn the one
            into the other.
        left_alone: Text that all the patterns together must not change.
        check: A further test of what matched (a card's Luhn sum); the match is left alone when it fails.
    """

    name: str
    pattern: str
    caught: tuple[tuple[str, str], ...]
    left_alone: tuple[str, ...]
    check: Optional[Callable[[str], bool]] = None


# A key's value: a tuple, list or dict (one level: hidden whole), quoted (any characters, escaped quotes
# included), or bare up to white space, a quote or the "&" of a query's next "name=", not to "," or ";"
# inside it ("password=p@ss;w0rd" must not leak ";w0rd"); a trailing "," or ";" is punctuation, not secret.
_KEY_VALUE = (
    r"[\"']?[ \t]*[:=][ \t]*(?(auth)(?=[(\[{]))(?P<q>[\"'])?(?P<secret>(?(q)(?:\\.|(?!(?P=q))[^\\\n])+"
    r"|(?:\([^()\n]{0,300}\)|\[[^\[\]\n]{0,300}\]|\{[^{}\n]{0,300}\}"
    r"|(?:[^\s\"'&]|&(?![\w.-]+=))*[^\s\"'&,;)\]}])))"
)
_SECRET_NAME = rf"(?:[\w.-]*?(?:{KEY_WORDS})|(?:[\w-]*[_-])?(?:{_SHORT_WORDS}))"
# Names that are a secret only as a query parameter or form field: "key=" elsewhere is a cache key.
_FIELD_NAME = r"(?:[\w.-]*[_-])?(?:key|sig|signature)"

# Order matters: a header or a PEM block is hidden whole before the narrower shapes look inside it.
SECRET_SHAPES: tuple[SecretShape, ...] = (
    SecretShape(
        "private key block",
        # The BEGIN line stays (it says what was hidden); the body goes, to END or to the end of the text.
        r"-----BEGIN [A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:(?!-----END )[\s\S])+"
        r"(?:-----END [A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----)?)",
        caught=(
            ("key -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY----- loaded",
             "key -----BEGIN RSA PRIVATE KEY-----*** loaded"),
            ("cut -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nmore",
             "cut -----BEGIN OPENSSH PRIVATE KEY-----***"),
            ('{"pem": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n"}',
             '{"pem": "-----BEGIN PRIVATE KEY-----***\\n"}'),
        ),
        left_alone=(
            "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----",
            "private key file not found: /etc/ssl/private/server.key",
        ),
    ),
    SecretShape(
        "authorization header",
        # Authorization: <anything to end of line>; Proxy-/X-Authorization, cookies, "Authorization": "..."
        r"(?i)(?<![\w-])(?:proxy-|x-)?(?:authorization|set-cookie|cookie)[\"']?[ \t]*[:=][ \t]*"
        r"(?P<q>[\"'])?(?P<secret>(?(q)[^\"'\n]+|[^\n]+))",
        caught=(
            ("X-Authorization: Bearer abc", "X-Authorization: ***"),
            ("Authorization: SDK-HMAC-SHA256 Access=AK, Signature=ab\nnext", "Authorization: ***\nnext"),
            ('{"Authorization": "Bearer x", "Host": "h"}', '{"Authorization": "***", "Host": "h"}'),
            ("Cookie: session=abc; theme=dark", "Cookie: ***"),
        ),
        left_alone=("pre-authorization: gateway timeout", "authorization failed for user bob"),
    ),
    SecretShape(
        "credentials in a URL",
        # scheme://user:password@host keeps user and host; a "#" in a password is not a fragment. (A scheme
        # starts where no scheme character stands before it: linear time on "a.a.a.a...".)
        r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s:/@]*:(?P<secret>[^\s/?]+)@",
        caught=(
            ("connect postgres://admin:S3cr3t@db.internal:5432/app",
             "connect postgres://admin:***@db.internal:5432/app"),
            ("redis://:p@ss@cache:6379/0", "redis://:***@cache:6379/0"),
            ("amqp://app:p#ss@mq/vhost", "amqp://app:***@mq/vhost"),
        ),
        left_alone=(
            "GET https://api.example.com:8443/v1/orders/13551d6b-755d-4757-b956-536f674975c0?page=2",
            "see http://example.com/a@b",
        ),
    ),
    SecretShape(
        "user:password@host",
        # Without a scheme: a user name with a letter in it (not "12:30@node"), then the password up to the
        # last "@" before the host; "mailto:" is an address. (The password stops at ":", so that each try
        # ends at the next one: linear time on "(a:b(a:b(a:b...".)
        r"(?<![\w.%+-])(?=[\w.%+-]*[A-Za-z])(?!mailto:)[\w.%+-]+:"
        r"(?P<secret>[^\s/:@]+(?:@[^\s/:@]+)*)@(?=[A-Za-z0-9])",
        caught=(
            ("login admin:hunter2@db.internal failed", "login admin:***@db.internal failed"),
            ("proxy bob:p@ss@10.0.0.1:3128", "proxy bob:***@10.0.0.1:3128"),
            ("dsn app:p#ss?w0rd@db", "dsn app:***@db"),
            ("dsn=app_user:S3cr3t@db-1:5432/shop", "dsn=app_user:***@db-1:5432/shop"),
        ),
        left_alone=(
            "mail bob@example.com bounced",
            "mailto:bob@example.com",
            "ssh git@github.com:org/repo.git",
            "at 2024-01-15T10:30:00Z on db-1.internal:5432 (12:30@node-1)",
            "route fe80::1@eth0",
        ),
    ),
    SecretShape(
        "command-line flag",
        # --password X, --api-key=X, -storepass X (keytool); a value starting with "-" is the next flag.
        rf"(?i)(?<![\w-])--?(?:{_SECRET_NAME}|(?:src|dest)?(?:store|key)pass)(?:=|[ \t]+)"
        r"(?P<q>[\"'])?(?P<secret>(?(q)(?:\\.|(?!(?P=q))[^\\\n])+|(?!-)[^\s\"']+))",
        caught=(
            ("run --password hunter2 --verbose", "run --password *** --verbose"),
            ("deploy --token abc123 --env prod", "deploy --token *** --env prod"),
            ("cli --secret 's3 cr3t' done", "cli --secret '***' done"),
            ("aws --api-key k3y --region x", "aws --api-key *** --region x"),
            ("mysql --password=hunter2 db", "mysql --password=*** db"),
            ("keytool -storepass changeit -alias x", "keytool -storepass *** -alias x"),
            ("login --pw hunter2", "login --pw ***"),
        ),
        left_alone=(
            "start --password-file /run/secrets/db --token-count 5",
            "run --no-password --verbose",
            "use --bypass-cache --env prod",
        ),
    ),
    SecretShape(
        "secret-named key",
        # password=..., "api_key": "...", dbPassword: ..., ?token=..., pw=..., HUAWEICLOUD_SDK_SK=...; and
        # auth=("bob", "pw") as requests takes it (auth and creds only with a tuple, list or dict).
        # The first lookahead skips, at the cost of one scan, every word not followed by ":" or "=".
        r"(?i)(?<![\w.-])(?=[\w.-]+[\"']?[ \t]*[:=])"
        rf"(?:(?P<auth>(?:[\w-]*[_-])?(?:auth|creds?))|{_SECRET_NAME}){_KEY_VALUE}",
        caught=(
            ("get failed auth=('bob', 'hunter2')", "get failed auth=***"),
            ("kwargs {'auth': ['bob', 'hunter2'], 'timeout': 5}", "kwargs {'auth': ***, 'timeout': 5}"),
            ("creds=(bob, hunter2) rejected", "creds=*** rejected"),
            ("credentials={'user': 'bob', 'key': 'x'}", "credentials=***"),
            ("login failed password=hunter2 user=bob", "login failed password=*** user=bob"),
            ("passwd: hunter2", "passwd: ***"),
            ("pwd=hunter2 secret=xyz sk=abc", "pwd=*** secret=*** sk=***"),
            ("pw=hunter2 passcode=1234", "pw=*** passcode=***"),
            ("token=abc123 api_key=k1 apikey: k2", "token=*** api_key=*** apikey: ***"),
            ("access_key=k3 X-Auth-Token: t4", "access_key=*** X-Auth-Token: ***"),
            ("dbPassword=hunter2, accessToken=zz", "dbPassword=***, accessToken=***"),
            ("password=p@ss;w0rd next", "password=*** next"),
            ("password=abc,def123 ok", "password=*** ok"),
            ("pw=&a&b=c passcode=x&y ok", "pw=***&b=c passcode=*** ok"),
            ("HUAWEICLOUD_SDK_SK=short", "HUAWEICLOUD_SDK_SK=***"),
            ("passphrase=opensesame", "passphrase=***"),
            ("(user=ana, password=hunter2) failed", "(user=ana, password=***) failed"),
            ('body {"password": "hun\\"ter2", "user": "bob"}', 'body {"password": "***", "user": "bob"}'),
            ("kwargs {'api_key': 'abc123', 'retries': 3}", "kwargs {'api_key': '***', 'retries': 3}"),
            ("GET /login?user=bob&token=abc123&page=2", "GET /login?user=bob&token=***&page=2"),
            ("POST /auth?access_token=abc&pwd=x&passwd=y", "POST /auth?access_token=***&pwd=***&passwd=***"),
            ("java -Ddb.password=hunter2 -jar app.jar", "java -Ddb.password=*** -jar app.jar"),
        ),
        left_alone=(
            "task=build disk=sda",
            "connect api.shop.sk:443 failed",
            "max_tokens=5 bypass=true task: done",
            "wrong password.",
            "password reset for bob, 3 passwords=expired",
            "author=(Jane Doe) oauth=(on) auth=ok retries=(1, 2)",
        ),
    ),
    SecretShape(
        "query parameter",
        # ?key=, &sig=, &X-Amz-Signature=: secret names only where a query string has them.
        rf"(?i)(?<=[?&]){_FIELD_NAME}=(?P<secret>[^\s&#\"']+)",
        caught=(
            ("GET /geo?q=paris&key=abc123", "GET /geo?q=paris&key=***"),
            ("GET /blob?sv=2022&sig=abc%2Bdef&se=2024", "GET /blob?sv=2022&sig=***&se=2024"),
            ("s3 ?X-Amz-Signature=deadbeef&X-Amz-Date=x", "s3 ?X-Amz-Signature=***&X-Amz-Date=x"),
        ),
        left_alone=("GET /orders?sort_by=date&page=2&monkey=1&keyword=x", "signature: invalid"),
    ),
    SecretShape(
        "form field",
        # A form body's first field has no "?" or "&" before it, but one after.
        # (The value stops at "=" too: on "key=key=key=..." each try ends at once, so the time is linear.)
        rf"(?i)(?<![^\s\"'=]){_FIELD_NAME}=(?P<secret>[^\s&#\"'=]+)(?=&)",
        caught=(
            ("POST body key=abc123&format=json", "POST body key=***&format=json"),
            ("data='sig=abc&ts=1'", "data='sig=***&ts=1'"),
        ),
        left_alone=("cache key=user:42 expired", "key=value pairs & more"),
    ),
    SecretShape(
        "bearer, basic or token credential",
        # A credential of only lower-case letters is a word ("basic setup").
        r"\b(?i:bearer|basic|token)[ \t]+"
        r"(?P<secret>(?=[A-Za-z0-9._~+/-][a-z._~-]*[A-Z0-9+/=])[A-Za-z0-9._~+/-]{8,}=*)",
        caught=(
            ("retrying with Bearer abc.DEF-123_xyz", "retrying with Bearer ***"),
            ("header Basic dXNlcjpwYXNzd29yZA==", "header Basic ***"),
        ),
        left_alone=("Basic authentication failed for user bob", "the bearer of bad news", "token expired"),
    ),
    SecretShape(
        "AWS access key id",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        caught=(
            ("aws AKIAIOSFODNN7EXAMPLE denied", "aws *** denied"),
            ("ASIAY34FZKBOKMUTVV7A", "***"),
            ("id AKIAQWERTYUIOPASDFGH (no digit)", "id *** (no digit)"),
        ),
        left_alone=("region ASIA-PACIFIC-1", "AKIA is the prefix", "ASIAN markets"),
    ),
    SecretShape(
        "GitHub token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{30,255})(?![A-Za-z0-9_])",
        caught=(
            ("push 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 rejected", "push *** rejected"),
            ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "pat ***"),
        ),
        left_alone=("ghp_ tokens are rotated", "gho_short ghost_town_0123"),
    ),
    SecretShape(
        "Slack token",
        r"(?<![A-Za-z0-9])xox[baprse]-[A-Za-z0-9-]{10,250}",
        caught=(
            ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKl failed", "slack *** failed"),
            ("hook xoxp-1234567890-0987654321-abcdef ok", "hook *** ok"),
        ),
        left_alone=("xoxo from the team", "xoxb-123"),
    ),
    SecretShape(
        "Google API key",
        r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])",
        caught=(
            ("maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe quota", "maps *** quota"),
            ("maps AIzaSyDaGmWKaJsXZ-HjGwISLn_namBGewQeXyZ quota", "maps *** quota"),
        ),
        left_alone=("AIza is the prefix", "AIzaSyShort"),
    ),
    SecretShape(
        "JSON Web Token",
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?",
        caught=(("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNH ok", "jwt *** ok"),),
        left_alone=("eyJ is how JSON starts in base64",),
    ),
    SecretShape(
        "card number",
        # 13 to 19 digits, in one run or in groups of 3 to 6 split by one space or dash; the check then
        # wants a network's length and first digit and a valid Luhn sum (most numbers fail it).
        r"(?<![\w.+-])(?:[2-6]\d{12,18}|[2-6]\d{3}(?: \d{3,6}){2,4}|[2-6]\d{3}(?:-\d{3,6}){2,4})"
        r"(?![\w-]|\.\d)",
        caught=(
            ("card 4111111111111111 declined", "card *** declined"),
            ("pan 4111 1111 1111 1111 exp 12/27", "pan *** exp 12/27"),
            ("amex 3782-822463-10005 ok, mc 5555555555554444.", "amex *** ok, mc ***."),
            ("card 4111 1111 1111 1111 123 declined", "card *** declined"),
            ("unionpay=6200000000000005 visa13 4222222222222", "unionpay=*** visa13 ***"),
        ),
        left_alone=(
            "order 4111111111111112 shipped",
            "ts=1700000000000 us=1700000000000000 sms to +8613800000001 ok",
            "ratio 0.30000000000000004 from 2024-01-15 ref 123456789012",
            "id 12345678-1234-5678-1234-567812345678 brazil 5511987654321",
        ),
        check=is_card_number,
    ),
    SecretShape(
        "long hex",
        # Keys, HMACs, session ids.
        r"(?<![A-Za-z0-9])[0-9a-fA-F]{32,}(?![A-Za-z0-9])",
        caught=(("hmac 7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe ok", "hmac *** ok"),),
        left_alone=("commit 3fbbc62 deployed", "request 13551d6b-755d-4757-b956-536f674975c0 failed"),
    ),
    SecretShape(
        "long base64",
        # Upper, lower and digits in one long run: words and identifiers rarely have all three.
        # Not next to "_" or "-": that is base64url, hidden whole by the next row, not cut in two.
        r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[0-9])"
        r"[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=_-])",
        caught=(("sk MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc end", "sk *** end"),),
        left_alone=("open /usr/lib/python3.11/site-packages/requests/adapters.py",),
    ),
    SecretShape(
        "long base64url",
        r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[0-9])"
        r"[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])",
        caught=(("session Zm9vYmFyYmF6cXV4X3Rlc3Rfc2Vzc2lvbl9pZF8x_-AB end", "session *** end"),),
        left_alone=("module smn_alert_pipeline_dispatcher_worker_thread_Main ok",),
    ),
    SecretShape(
        "access key id",
        # Huawei Cloud (and AWS) access key ids: 20 upper-case letters and digits.
        r"(?<![A-Za-z0-9])(?=[A-Z0-9]*[0-9])(?=[0-9]*[A-Z])[A-Z0-9]{20}(?![A-Za-z0-9])",
        caught=(("ak QTWAOYTTINDUT2QVKYUC end", "ak *** end"),),
        left_alone=("status INTERNAL_SERVER_ERROR code ABCDEFGHIJKLMNOPQRST",),
    ),
)  # fmt: skip
