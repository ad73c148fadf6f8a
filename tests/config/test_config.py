"""The options table at work: load_config's layering and validation, bind parsing, app loading.

Mostly in-process unit tests; one end-to-end test checks that a config file, the
environment and a flag together reach a running server's SETTINGS frame.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.settings
import pytest

from h2gate.config import Config, load_config, read_env, read_toml
from h2gate.errors import AppLoadError, ConfigError
from h2gate.net.binds import Bind, parse_bind
from h2gate.ops.appload import as_asgi3, import_app, is_asgi2
from tests.h2raw import RawH2


def write_toml(tmp_path: Path, text: str, name: str = "h2gate.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- precedence: defaults < config file < environment < flags ----------------------

# (field, TOML literal, env text, CLI value, expected from TOML, expected from env)
LAYERS = [
    ("max_concurrent_streams", "5", "6", 7, 5, 6),
    ("graceful_timeout", "1.5", "2.5", 3.5, 1.5, 2.5),
    ("access_log", "false", "yes", False, False, True),
    ("bind", '["127.0.0.1:1"]', "127.0.0.1:2, unix:/tmp/x.sock", ["[::1]:4"], ["127.0.0.1:1"],
     ["127.0.0.1:2", "unix:/tmp/x.sock"]),
    ("log_level", '"debug"', "warning", "error", "debug", "warning"),
    ("keyfile_password", '"from-file"', "from-env", "from-flag", "from-file", "from-env"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "toml", "env", "cli", "from_toml", "from_env"), LAYERS, ids=[p[0] for p in LAYERS])
def test_precedence(tmp_path: Path, name: str, toml: str, env: str, cli: Any, from_toml: Any, from_env: Any) -> None:
    path = write_toml(tmp_path, f"{name} = {toml}\n")
    env_name = "H2GATE_" + name.upper()
    default = getattr(Config(), name)
    # Each layer differs from the one below it, or a layer could be ignored unnoticed.
    assert default != from_toml and from_toml != from_env and from_env != cli

    assert getattr(load_config({}, {}), name) == default
    assert getattr(load_config({"config": path}, {}), name) == from_toml
    assert getattr(load_config({"config": path}, {env_name: env}), name) == from_env
    assert getattr(load_config({"config": path, name: cli}, {env_name: env}), name) == cli
    assert getattr(load_config({name: cli}, {env_name: env}), name) == cli
    assert getattr(load_config({}, {env_name: env}), name) == from_env


def test_layers_only_override_what_they_set(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "max_concurrent_streams = 5\nbacklog = 7\n")
    config = load_config({"backlog": 9}, {"H2GATE_CONFIG": path, "H2GATE_ACCESS_LOG": "off"})
    assert (config.max_concurrent_streams, config.backlog, config.access_log) == (5, 9, False)
    assert config.initial_window_size == Config().initial_window_size
    assert config.config == path


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'app = "apps.basic:app"\nserver_header = false\n')
    config = load_config({}, {"H2GATE_CONFIG": path})
    assert config.app == "apps.basic:app"
    assert config.server_header is False
    assert config.config == path


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    from_env = write_toml(tmp_path, "backlog = 11\n", "env.toml")
    from_flag = write_toml(tmp_path, "backlog = 22\n", "flag.toml")
    config = load_config({"config": from_flag}, {"H2GATE_CONFIG": from_env})
    assert (config.backlog, config.config) == (22, from_flag)


def test_unrelated_environment_is_ignored() -> None:
    assert read_env({"PATH": "/bin", "H2GATE": "x", "H2GATE_NOT_AN_OPTION": "1", "h2gate_backlog": "3"}) == {}


# --- environment parsing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("1", "true", "yes", "on", "TRUE", "Yes", " on ")],
        *[(t, False) for t in ("0", "false", "no", "off", "FALSE", "Off", "no\n")],
    ],
)
def test_env_booleans(text: str, value: bool) -> None:
    assert load_config({}, {"H2GATE_SERVER_HEADER": text}).server_header is value
    assert load_config({}, {"H2GATE_SELF_SIGNED": text}).self_signed is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "enabled"])
def test_env_bad_boolean(text: str) -> None:
    with pytest.raises(ConfigError, match="environment variable H2GATE_ACCESS_LOG: expected a boolean"):
        load_config({}, {"H2GATE_ACCESS_LOG": text})


def test_env_list_is_comma_separated() -> None:
    config = load_config({}, {"H2GATE_BIND": " 127.0.0.1:1,unix:/tmp/a.sock ,, [::1]:2 "})
    assert config.bind == ["127.0.0.1:1", "unix:/tmp/a.sock", "[::1]:2"]


def test_env_empty_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match="at least one --bind"):
        load_config({}, {"H2GATE_BIND": " , "})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("H2GATE_MAX_CONCURRENT_STREAMS", "abc", "expected an integer, got 'abc'"),
        ("H2GATE_MAX_CONCURRENT_STREAMS", "1.5", "expected an integer"),
        ("H2GATE_MAX_CONCURRENT_STREAMS", "0", "must be at least 1, got 0"),
        ("H2GATE_MAX_FRAME_SIZE", "16777216", "must be at most 16777215, got 16777216"),
        ("H2GATE_GRACEFUL_TIMEOUT", "soon", "expected a number, got 'soon'"),
        ("H2GATE_GRACEFUL_TIMEOUT", "-0.5", "must be at least 0"),
        ("H2GATE_GRACEFUL_TIMEOUT", "nan", "expected a number, got nan"),
        ("H2GATE_HANDSHAKE_TIMEOUT", "0.05", "must be at least 0.1"),
        ("H2GATE_LOOP", "uvloop", "must be one of asyncio, trio, got 'uvloop'"),
        ("H2GATE_LIFESPAN", "maybe", "must be one of auto, on, off"),
    ],
)
def test_env_bad_values_name_the_variable(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, {name: text})
    assert str(info.value).startswith(f"environment variable {name}: ")
    assert message in str(info.value)


def test_env_numbers_and_strings() -> None:
    config = load_config(
        {},
        {
            "H2GATE_MAX_CONCURRENT_STREAMS": " 42 ",
            "H2GATE_GRACEFUL_TIMEOUT": "2",
            "H2GATE_ROOT_PATH": "/api",
            "H2GATE_LOOP": "trio",
        },
    )
    assert config.max_concurrent_streams == 42
    assert config.graceful_timeout == 2.0 and isinstance(config.graceful_timeout, float)
    assert (config.root_path, config.loop) == ("/api", "trio")


# --- TOML type checking ------------------------------------------------------------------


def test_toml_int_for_float_is_accepted(tmp_path: Path) -> None:
    values = read_toml(write_toml(tmp_path, "graceful_timeout = 5\nkeep_alive_timeout = 0\n"))
    assert values == {"graceful_timeout": 5.0, "keep_alive_timeout": 0.0}
    assert isinstance(values["graceful_timeout"], float)


def test_toml_dashed_keys_and_single_bind_string(tmp_path: Path) -> None:
    values = read_toml(write_toml(tmp_path, 'max-concurrent-streams = 9\nbind = "unix:/tmp/s.sock"\n'))
    assert values == {"max_concurrent_streams": 9, "bind": ["unix:/tmp/s.sock"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_concurrent_streams = true", "key 'max_concurrent_streams': expected an integer, got bool True"),
        ("max_concurrent_streams = 1.5", "key 'max_concurrent_streams': expected an integer, got float 1.5"),
        ('max_concurrent_streams = "lots"', "key 'max_concurrent_streams': expected an integer, got str 'lots'"),
        ("graceful_timeout = true", "key 'graceful_timeout': expected a number, got bool"),
        ('graceful_timeout = "5"', "key 'graceful_timeout': expected a number, got str"),
        ("graceful_timeout = nan", "key 'graceful_timeout': expected a number, got nan"),
        ("access_log = 1", "key 'access_log': expected a boolean, got int 1"),
        ('access_log = "true"', "key 'access_log': expected a boolean, got str"),
        ("bind = [8000]", "key 'bind': expected a list of strings"),
        ("certfile = 3", "key 'certfile': expected a string, got int 3"),
        ('log_level = "loud"', "key 'log_level': must be one of critical, error, warning, info, debug, trace"),
        ("max_concurrent_streams = 0", "key 'max_concurrent_streams': must be at least 1, got 0"),
        ("max_frame_size = 16777216", "key 'max_frame_size': must be at most 16777215, got 16777216"),
        ("no_such_option = 1", "unknown key 'no_such_option'"),
        ('config = "other.toml"', "unknown key 'config'"),  # a config file cannot name another
    ],
)
def test_toml_bad_values_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_toml(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert str(info.value).startswith(f"config file {path}")
    assert message in str(info.value)


def test_toml_missing_and_invalid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_toml(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_toml(write_toml(tmp_path, "backlog = = 3\n"))
    with pytest.raises(ConfigError, match="cannot be read"):
        read_toml(str(tmp_path))  # a directory


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"max_concurrent_streams": 0}, "--max-concurrent-streams: must be at least 1"),
        ({"graceful_timeout": -1.0}, "--graceful-timeout: must be at least 0"),
        ({"graceful_timeout": float("nan")}, "--graceful-timeout: expected a number, got nan"),
        ({"bind": []}, "at least one --bind address"),
    ],
)
def test_cli_values_are_checked(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(cli, {})


# --- cross-checks ----------------------------------------------------------------------------


def test_keyfile_without_certfile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--keyfile needs --certfile"):
        load_config({"keyfile": "key.pem"}, {})
    # ... wherever the keyfile came from.
    with pytest.raises(ConfigError, match="--keyfile needs --certfile"):
        load_config({}, {"H2GATE_CONFIG": write_toml(tmp_path, 'keyfile = "key.pem"\n')})
    config = load_config({"keyfile": "key.pem"}, {"H2GATE_CERTFILE": "cert.pem"})
    assert (config.certfile, config.keyfile, config.use_tls) == ("cert.pem", "key.pem", True)


def test_self_signed_and_certfile_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="mutually exclusive"):
        load_config({"self_signed": True}, {"H2GATE_CERTFILE": "cert.pem"})
    assert load_config({"self_signed": True}, {}).use_tls
    assert not load_config({}, {}).use_tls


# --- end to end: every layer reaches the server -----------------------------------------------


def _settings_and_headers(host: str, port: int) -> tuple[dict[int, int], dict[bytes, bytes]]:
    """Connect with a raw h2 client: the server's SETTINGS and the headers of GET /."""
    with RawH2(port, host=host) as client:
        response = client.get("/")
        assert response.ended
        return dict(client.remote_settings), dict(response.headers)


def test_file_env_and_flag_reach_the_server(serve: object, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        "\n".join(
            [
                'bind = ["127.0.0.1:0"]',  # only the file binds
                "max_concurrent_streams = 11",  # beaten by the environment
                "initial_window_size = 70000",  # beaten by the environment and the flag
                "max_frame_size = 32768",  # only the file sets it
                "server_header = false",  # only the file sets it
            ]
        ),
    )
    server = serve(
        "apps.basic:app",
        "--config",
        path,
        "--initial-window-size",
        "90000",
        env={"H2GATE_MAX_CONCURRENT_STREAMS": "22", "H2GATE_INITIAL_WINDOW_SIZE": "80000"},
        bind=False,
    )
    settings, headers = _settings_and_headers("127.0.0.1", server.port)
    codes = h2.settings.SettingCodes
    assert settings[codes.MAX_CONCURRENT_STREAMS] == 22
    assert settings[codes.INITIAL_WINDOW_SIZE] == 90000
    assert settings[codes.MAX_FRAME_SIZE] == 32768
    assert settings[codes.MAX_HEADER_LIST_SIZE] == Config().max_header_list_size
    assert headers[b":status"] == b"200"
    assert b"server" not in headers


def test_default_server_header_is_sent(serve: object) -> None:
    # The counterpart of the test above: without the file, the header is there.
    server = serve("apps.basic:app")
    settings, headers = _settings_and_headers("127.0.0.1", server.port)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == Config().max_concurrent_streams
    assert headers[b"server"].startswith(b"h2gate")


# --- parse_bind ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bind", "shown"),
    [
        ("127.0.0.1:8000", Bind("tcp", host="127.0.0.1", port=8000), "127.0.0.1:8000"),
        ("localhost:0", Bind("tcp", host="localhost", port=0), "localhost:0"),
        (":8000", Bind("tcp", host="0.0.0.0", port=8000), "0.0.0.0:8000"),
        ("[::1]:443", Bind("tcp", host="::1", port=443), "[::1]:443"),
        ("[::]:65535", Bind("tcp", host="::", port=65535), "[::]:65535"),
        ("unix:/run/h2gate.sock", Bind("unix", path="/run/h2gate.sock"), "unix:/run/h2gate.sock"),
        ("unix:relative.sock", Bind("unix", path="relative.sock"), "unix:relative.sock"),
        ("fd://3", Bind("fd", fd=3), "fd://3"),
    ],
)
def test_parse_bind(text: str, bind: Bind, shown: str) -> None:
    assert parse_bind(text) == bind
    assert str(parse_bind(text)) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense", "expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"),
        ("127.0.0.1:notaport", "port 'notaport' is not a number"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:70000", "port must be 0-65535"),
        ("127.0.0.1:-1", "port must be 0-65535"),
        ("[::1]8000", "expected HOST:PORT"),
        ("[::1:8000", "expected HOST:PORT"),
        ("::1:8000", "expected HOST:PORT"),  # IPv6 needs brackets
        ("fd://x", "fd:// needs a file descriptor number"),
        ("fd://-1", "negative file descriptor"),
        ("unix:", "empty unix socket path"),
    ],
)
def test_parse_bind_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bind(text)
    assert str(info.value).startswith(f"bad bind {text!r}: ")
    assert message in str(info.value)


# --- appload: ASGI 2 or 3 -------------------------------------------------------------------


class ASGI2Class:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "from", "style": "asgi2-class", "path": self.scope["path"]})


def asgi2_closure(scope: dict[str, Any]) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "from", "style": "asgi2-closure", "path": scope["path"]})

    return instance


def asgi2_with_option(scope: dict[str, Any], style: str = "unset") -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "from", "style": style, "path": scope["path"]})

    return instance


async def asgi3_function(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "from", "style": "asgi3-function", "path": scope["path"]})


async def asgi3_with_option(scope: dict[str, Any], receive: Any, send: Any, style: str = "unset") -> None:
    await send({"type": "from", "style": style, "path": scope["path"]})


class ASGI3Instance:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "from", "style": "asgi3-instance", "path": scope["path"]})


class ASGI3SyncCall:
    """An ASGI 3 object whose plain ``__call__`` returns the coroutine (as some middleware does)."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return asgi3_function(scope, receive, send)


APPS = [
    ("asgi2-class", ASGI2Class, True),
    ("asgi2-closure", asgi2_closure, True),
    ("asgi2-partial", functools.partial(asgi2_with_option, style="asgi2-partial"), True),
    ("asgi3-function", asgi3_function, False),
    ("asgi3-instance", ASGI3Instance(), False),
    ("asgi3-partial", functools.partial(asgi3_with_option, style="asgi3-partial"), False),
    ("asgi3-function", ASGI3SyncCall(), False),
]


@pytest.mark.parametrize(("style", "app", "asgi2"), APPS, ids=[f"{a[0]}-{i}" for i, a in enumerate(APPS)])
def test_asgi_version_detection_and_adapter(style: str, app: Any, asgi2: bool) -> None:
    assert is_asgi2(app) is asgi2
    wrapped = as_asgi3(app)
    if not asgi2:
        assert wrapped is app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("not used")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(wrapped({"type": "http", "path": "/p"}, receive, send))
    assert sent == [{"type": "from", "style": style, "path": "/p"}]


# --- appload: import_app --------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(sys, "path", sys.path[:])  # import_app puts app_dir on it
    (tmp_path / "h2gate_test_appmod.py").write_text(
        "async def app(scope, receive, send):\n    pass\n"
        "def create_app():\n    return app\n"
        "def make_nothing():\n    return 42\n"
        "def needs(arg):\n    return app\n"
        "class Holder:\n    inner = app\n"
        "value = 'text'\n"
    )
    yield tmp_path
    sys.modules.pop("h2gate_test_appmod", None)


def test_import_app_attribute_paths(app_dir: Path) -> None:
    app = import_app("h2gate_test_appmod:app", app_dir=str(app_dir))
    assert app.__name__ == "app"
    assert import_app("h2gate_test_appmod:Holder.inner", app_dir=str(app_dir)) is app
    assert import_app("h2gate_test_appmod:create_app", factory=True, app_dir=str(app_dir)) is app


@pytest.mark.parametrize(
    ("spec", "factory", "message"),
    [
        ("h2gate_test_appmod", False, "must be given as MODULE:ATTRIBUTE"),
        ("h2gate_test_appmod:", False, "must be given as MODULE:ATTRIBUTE"),
        (":app", False, "must be given as MODULE:ATTRIBUTE"),
        ("h2gate_test_no_such_mod:app", False, "cannot import module 'h2gate_test_no_such_mod': no such module"),
        ("h2gate_test_appmod:missing", False, "has no attribute 'missing'"),
        ("h2gate_test_appmod:Holder.missing", False, "has no attribute 'Holder.missing'"),
        ("h2gate_test_appmod:value", False, "is not callable (it is a str)"),
        ("h2gate_test_appmod:needs", True, "could not be called without arguments"),
        ("h2gate_test_appmod:make_nothing", True, "returned int, which is not callable"),
    ],
)
def test_import_app_errors(app_dir: Path, spec: str, factory: bool, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        import_app(spec, factory=factory, app_dir=str(app_dir))
    assert message in str(info.value)
