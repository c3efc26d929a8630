"""A plugin whose send hook is misspelled: without a check it would load, declare itself
and never be called. stormd must refuse to start, naming it and the hook."""

from stormd.plugins import ProviderInfo, hookimpl


@hookimpl
def stormd_provider():
    return ProviderInfo(name="kite", channels=("sms",))


@hookimpl
def stormd_sned(message, config, http):
    return "never-called"
