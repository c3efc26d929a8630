"""Loads channel plugins (built-ins, then the `stormd.channels` entry points), validates
their configuration, and calls one provider's hooks on behalf of the pipeline.

A plugin that fails to import, register or declare itself is reported by name in
`broken` and logged; the daemon carries on with the others. A plugin implementing a hook
that does not exist (a misspelled name would silently never be called) stops start-up
instead, like a bad configuration key.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import Distribution, PackageNotFoundError, entry_points, version
from typing import Any

import pluggy
from pydantic import ValidationError

from stormd.config.errors import ConfigError
from stormd.config.secrets import scrub, secret_values
from stormd.config.settings import Settings
from stormd.plugins import CHANNELS, ProviderInfo, _hookspecs

log = logging.getLogger("stormd.plugins")

BUILTIN_PLUGINS = (
    "outbox", "resend", "smtp", "sslwireless", "banglalink", "robi", "whatsapp_meta", "push",
)
HOOK_NAMES = tuple(n for n, f in vars(_hookspecs).items()
                   if hasattr(f, f"{_hookspecs.PROJECT}_spec"))


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from: the distribution that installed it (stormd itself for the
    built-ins) and its version, else (a plugin handed in by code) its module if any."""

    distribution: str | None = None
    version: str | None = None
    module: str | None = None

    def __str__(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or '(no version)'}"
        return f"module {self.module}" if self.module else "passed in by code"


def _stormd_version() -> str | None:
    try:
        return version("stormd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return None


@dataclass
class Provider:
    """A loaded plugin with its validated configuration and pipeline limits."""

    info: ProviderInfo
    plugin: Any
    origin: Origin = Origin()
    config: Any = None
    rate_limit: float = 0.0  # messages per second; 0 = unlimited
    burst: int = 1
    concurrency: int = 50
    hooks: dict[Any, Any] = field(default_factory=dict)  # cached callers by hook name

    @property
    def name(self) -> str:
        return self.info.name


class ChannelPlugins:
    """The plugin manager: `providers` by name, `broken` plugins by name with the reason."""

    def __init__(self, *, load_entry_points: bool = True, extra: Iterable[Any] = ()):
        """Load every plugin; raises ConfigError if one implements a hook that does not
        exist."""
        self.pm = pluggy.PluginManager(_hookspecs.PROJECT)
        self.pm.add_hookspecs(_hookspecs)
        self.providers: dict[str, Provider] = {}
        self.broken: dict[str, str] = {}
        self.origins: dict[str, Origin] = {}  # by registration label
        builtin = Origin("stormd", _stormd_version())
        for name in BUILTIN_PLUGINS:
            try:
                module = importlib.import_module(f"stormd.plugins.builtin.{name}")
            except ImportError as exc:  # e.g. a missing optional dependency
                self._refuse(f"builtin.{name}", f"cannot be imported: {exc}")
                continue
            self.add(module, name=f"builtin.{name}", origin=builtin)
        if load_entry_points:
            self.load_entry_points()
        for plugin in extra:
            self.add(plugin)
        self._check_pending()

    def load_entry_points(self) -> None:
        for ep in entry_points(group=_hookspecs.ENTRY_POINT_GROUP):
            origin = _origin(ep.dist, ep.module)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a third party's import error must not stop us
                self._refuse(ep.name, f"cannot be imported: {type(exc).__name__}: {exc}")
                continue
            self.add(plugin, name=ep.name, origin=origin)

    def add(self, plugin: Any, name: str | None = None,
            origin: Origin | None = None) -> Provider | None:
        """Register one plugin; on any problem record it in `broken` and return None.

        A plugin implementing a hook that does not exist stays registered, unused, for
        `_check_pending` to refuse start-up with its name."""
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        origin = origin or Origin(module=getattr(plugin, "__name__", None))
        try:
            self.pm.register(plugin, name=label)
        except Exception as exc:  # noqa: BLE001 - pluggy rejects bad hooks with various errors
            self._refuse(label, f"cannot be registered: {exc}")
            return None
        self.origins[label] = origin
        if self._unknown_hooks(plugin):
            return None
        try:
            info = self._only(plugin, "stormd_provider")()
            if not isinstance(info, ProviderInfo):
                raise TypeError("stormd_provider() must return a ProviderInfo")
            if not info.name or not info.channels:
                raise ValueError("ProviderInfo needs a name and at least one channel")
            unknown = [c for c in info.channels if c not in CHANNELS]
            if unknown:
                raise ValueError(f"unknown channel(s) {unknown}; known: {list(CHANNELS)}")
            if info.name in self.providers:
                raise ValueError(f"provider name {info.name!r} is already taken")
            if not self._implements(plugin, "stormd_send"):
                raise ValueError("it implements no stormd_send hook")
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises, it is reported
            self.pm.unregister(plugin)
            self._refuse(label, str(exc))
            return None
        for known in self.providers.values():
            known.hooks.clear()  # cached callers must not see the new plugin
        provider = Provider(info=info, plugin=plugin, origin=origin)
        self.providers[info.name] = provider
        return provider

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()
                      if not caller.has_spec())

    def _check_pending(self) -> None:
        """pluggy's check that every implementation matches a hookspec, turned into one
        line naming the plugin, where it came from and the hook it misspelled."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            label = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            where = [str(self.origins.get(label, Origin()))]
            declared = self._declared_name(exc.plugin)
            if declared and declared != label:
                where.insert(0, f"provider {declared}")
            hooks = "; ".join(_unknown(name) for name in self._unknown_hooks(exc.plugin))
            raise ConfigError(f"channel plugin {label} ({', '.join(where)})",
                              hooks or str(exc)) from None

    def _declared_name(self, plugin: Any) -> str | None:
        """The provider name a plugin declares, if it declares one without failing."""
        try:
            info = self._only(plugin, "stormd_provider")()
        except Exception:  # noqa: BLE001 - only naming it; the error at hand is another
            return None
        return info.name if isinstance(info, ProviderInfo) else None

    def describe(self) -> str:
        """The loaded providers with their versions, for the start-up log: the built-ins
        carry stormd's version, a third-party plugin its distribution's."""
        loaded = []
        for name, provider in self.providers.items():
            o = provider.origin
            if o.distribution == "stormd":
                loaded.append(f"{name} {o.version or '(source tree)'}")
            elif o.distribution:
                loaded.append(f"{name} {o.version or '(no version)'} ({o.distribution})")
            else:
                loaded.append(f"{name} ({o})")
        return ", ".join(loaded) or "none"

    def _refuse(self, label: str, reason: str) -> None:
        self.broken[label] = reason
        log.error("channel plugin %s is broken and was not loaded: %s", label, reason)

    def _implements(self, plugin: Any, hook: str) -> bool:
        caller = getattr(self.pm.hook, hook)
        return any(impl.plugin is plugin for impl in caller.get_hookimpls())

    def _only(self, plugin: Any, hook: str):
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    def configure(self, settings: Settings) -> None:
        """Validate every `[providers.<name>]` section and check `[channels]` names.

        Raises ConfigError naming the key. A channel naming a broken plugin is logged and
        skipped (the others in its list still deliver)."""
        for name in settings.providers:
            if name not in self.providers:
                raise ConfigError(f"providers.{name}", f"no channel plugin is named {name!r}")
        for channel in CHANNELS:
            for name in settings.channels.providers(channel):
                provider = self.providers.get(name)
                if provider is None:
                    if self._is_broken(name):
                        log.error("channels.%s: provider %s is broken; skipped", channel, name)
                        continue
                    raise ConfigError(f"channels.{channel}",
                                      f"no channel plugin is named {name!r}")
                if channel not in provider.info.channels:
                    raise ConfigError(f"channels.{channel}",
                                      f"{name} does not deliver {channel}")
        for name, provider in self.providers.items():
            section = dict(settings.providers.get(name, {}))
            secrets = secret_values(section, settings.secret_paths, f"providers.{name}")
            try:
                provider.rate_limit = float(section.pop("rate_limit", 0))
                provider.burst = int(section.pop("burst", 1))
                provider.concurrency = int(
                    section.pop("concurrency", settings.delivery.concurrency))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"providers.{name}", scrub(str(exc), secrets)) from None
            if name not in settings.providers and not self._needs_config(name, settings):
                provider.config = self._validate(provider, section, quiet=True)
                continue
            provider.config = self._validate(provider, section, quiet=False, secrets=secrets)

    def _needs_config(self, name: str, settings: Settings) -> bool:
        return any(name in settings.channels.providers(c) for c in CHANNELS)

    def _is_broken(self, name: str) -> bool:
        return any(label == name or label.endswith(f".{name}") for label in self.broken)

    def _validate(self, provider: Provider, section: dict[str, Any], quiet: bool,
                  secrets: list[str] | None = None) -> Any:
        """The plugin's config object; a refusal names the key, never a secret value."""
        if not self._implements(provider.plugin, "stormd_validate_config"):
            return section
        try:
            result = self._only(provider.plugin, "stormd_validate_config")(config=section)
        except ValidationError as exc:
            if quiet:
                return None  # an unused provider without its section stays unconfigured
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            key = f"providers.{provider.name}" + (f".{where}" if where else "")
            raise ConfigError(key, scrub(_reason(error), secrets or [])) from None
        except ValueError as exc:
            if quiet:
                return None
            raise ConfigError(f"providers.{provider.name}", scrub(str(exc), secrets or [])
                              ) from None
        return section if result is None else result

    def for_channel(self, settings: Settings, channel: str) -> list[Provider]:
        """The loaded providers of a channel, in failover order."""
        return [self.providers[n] for n in settings.channels.providers(channel)
                if n in self.providers]

    def _direct(self, provider: Provider, name: str):
        """(function, argnames) when the hook has exactly one plain implementation."""
        caller = self.hook(provider, name)
        impls = caller.get_hookimpls() if caller is not None else []
        if len(impls) != 1 or impls[0].hookwrapper or impls[0].wrapper:
            return False
        return impls[0].function, impls[0].argnames

    def hook(self, provider: Provider, name: str):
        """The hook caller for one provider only, or None when it does not implement it."""
        if name not in provider.hooks:
            provider.hooks[name] = (self._only(provider.plugin, name)
                                    if self._implements(provider.plugin, name) else None)
        return provider.hooks[name]

    async def call(self, provider: Provider, name: str, **kwargs: Any) -> Any:
        """Call one provider's hook (awaiting an async implementation); None if absent.

        A provider's single plain implementation is called directly with the arguments
        it names, as pluggy would, minus pluggy's per-call machinery (the pipeline makes
        two such calls per message)."""
        direct = provider.hooks.get(("direct", name))
        if direct is None:
            direct = provider.hooks[("direct", name)] = self._direct(provider, name)
        if direct is not False:
            function, argnames = direct
            result = function(*[kwargs[a] for a in argnames])
            if inspect.isawaitable(result):
                result = await result
            return result
        caller = self.hook(provider, name)
        if caller is None:
            return None
        result = caller(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _origin(dist: Distribution | None, module: str | None) -> Origin:
    if dist is None:
        return Origin(module=module)
    return Origin(dist.name, dist.version, module)


def _unknown(name: str) -> str:
    """`name` is no hook, with the closest real one as a hint (`stormd_sned`)."""
    near = difflib.get_close_matches(name, HOOK_NAMES, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return f"{name} is not a stormd hook{hint}; it would never be called"


def _reason(error: dict) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return msg


def load_plugins(settings: Settings, *, load_entry_points: bool = True,
                 extra: Iterable[Any] = ()) -> ChannelPlugins:
    """Built-ins plus entry points, configured from `settings` (ConfigError on bad config)."""
    plugins = ChannelPlugins(load_entry_points=load_entry_points, extra=extra)
    plugins.configure(settings)
    return plugins
