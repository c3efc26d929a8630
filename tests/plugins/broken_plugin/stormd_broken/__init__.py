"""A plugin that fails on import: stormd must report it by name and carry on."""

raise ImportError("this plugin needs libpigeon.so, which is not installed")
